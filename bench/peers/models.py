"""The zoo's three architectures in idiomatic PyTorch, sized as stoker's reference shapes
(xtask/src/bench.rs). Parameter counts match stoker's except where PyTorch's nn.LSTM keeps two
bias vectors per layer (b_ih and b_hh) where stoker keeps one: +4H per layer."""

import math

import torch
from torch import nn
import torch.nn.functional as F


class Cnn2d(nn.Module):
    """[B, 24, 11] → [B, 1]: two 3×3 convs (32, 64) with ReLU, 2×2 max-pool, dense 128, head.
    stoker: 510 593 parameters."""

    def __init__(self, length=24, features=11, channels=(32, 64), hidden=128, outputs=1):
        super().__init__()
        convs, c_in = [], 1
        for c in channels:
            convs += [nn.Conv2d(c_in, c, 3, padding=1), nn.ReLU()]
            c_in = c
        self.convs = nn.Sequential(*convs)
        self.hidden = nn.Linear(c_in * (length // 2) * (features // 2), hidden)
        self.head = nn.Linear(hidden, outputs)

    def forward(self, x):
        h = self.convs(x.unsqueeze(1))
        h = F.max_pool2d(h, 2).flatten(1)
        return self.head(F.relu(self.hidden(h)))


class LstmAttention(nn.Module):
    """[B, 96, 7] → [B, 96·7]: 2-layer LSTM (128), additive attention (64) over time, context
    joined with the last hidden state, linear head. stoker: 382 240 parameters (+1 024 here)."""

    def __init__(self, features=7, hidden=128, layers=2, attention=64, outputs=96 * 7):
        super().__init__()
        self.lstm = nn.LSTM(features, hidden, layers, batch_first=True)
        self.score_w = nn.Linear(hidden, attention)
        self.score_v = nn.Linear(attention, 1, bias=False)
        self.head = nn.Linear(2 * hidden, outputs)

    def forward(self, x):
        h, _ = self.lstm(x)
        scores = self.score_v(torch.tanh(self.score_w(h))).squeeze(-1)
        weights = torch.softmax(scores.float(), dim=1).to(h.dtype)
        context = (h * weights.unsqueeze(-1)).sum(1)
        return self.head(torch.cat([context, h[:, -1]], dim=1))


def lowpass(cutoff_hz, taps, rate):
    """Hamming-windowed sinc low-pass, linear phase (as stoker's filterbank designs it)."""
    n = torch.arange(taps, dtype=torch.float64) - (taps - 1) / 2
    fc = cutoff_hz / rate
    h = 2 * fc * torch.special.sinc(2 * fc * n) * torch.hamming_window(taps, periodic=False, dtype=torch.float64)
    return h / h.sum()


class MultibandAnc(nn.Module):
    """Reference x [B, L] → control y [B, L − 383]: a fixed 3-band filterbank (129 taps, edges
    500 / 2 000 Hz at 16 kHz; bands sum to a delayed x), one MLP per band (256 taps → 384 tanh
    → 1) as one batched matmul over stacked band weights, bands summed.
    stoker: 297 731 parameters."""

    def __init__(self, edges=(500, 2000), filter_taps=129, taps=256, hidden=384, rate=16_000):
        super().__init__()
        lows = [lowpass(f, filter_taps, rate) for f in edges]
        delta = torch.zeros(filter_taps, dtype=torch.float64)
        delta[filter_taps // 2] = 1.0
        bands = [lows[0]] + [b - a for a, b in zip(lows, lows[1:])] + [delta - lows[-1]]
        # conv1d is a cross-correlation: flip so the filters apply causally.
        self.register_buffer("filters", torch.stack(bands).flip(-1).unsqueeze(1).float())
        k = len(bands)
        bound_in, bound_hidden = 1 / math.sqrt(taps), 1 / math.sqrt(hidden)
        self.w1 = nn.Parameter(torch.empty(k, taps, hidden).uniform_(-bound_in, bound_in))
        self.b1 = nn.Parameter(torch.empty(k, 1, hidden).uniform_(-bound_in, bound_in))
        self.w2 = nn.Parameter(torch.empty(k, hidden, 1).uniform_(-bound_hidden, bound_hidden))
        self.b2 = nn.Parameter(torch.empty(k, 1, 1).uniform_(-bound_hidden, bound_hidden))
        self.taps = taps

    def forward(self, x):
        batch = x.shape[0]
        bands = F.conv1d(x.unsqueeze(1), self.filters)                 # [B, K, L − 128]
        windows = bands.unfold(2, self.taps, 1)                         # [B, K, N, taps]
        n = windows.shape[2]
        windows = windows.transpose(0, 1).reshape(bands.shape[1], batch * n, self.taps)
        h = torch.tanh(torch.baddbmm(self.b1, windows, self.w1))
        y = torch.baddbmm(self.b2, h, self.w2).sum(0)                   # [B·N, 1]
        return y.reshape(batch, n)


def anc_residual(y, d, secondary):
    """e = d − S * y: the secondary path as a causal convolution over each chunk."""
    anti = F.conv1d(y.unsqueeze(1), secondary.flip(-1).view(1, 1, -1)).squeeze(1)
    return d - anti
