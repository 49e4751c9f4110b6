"""The zoo's three reference architectures in idiomatic PyTorch, layer for layer as stoker builds
them (crates/stoker-zoo/src; spec defaults in crates/stoker-artifact/src/model.rs), so the
stoker / PyTorch ratio compares implementations, not models. Each class states the parameter
count the Rust model has (EXPECTED_PARAMS); run.py checks it.

Mixed precision follows stoker's policy: under `torch.autocast` the convs, matmuls and the LSTM
run in bf16, while the attention softmax, the fixed ANC filterbank and the loss stay in f32.
"""

import math

import torch
import torch.nn.functional as F
from torch import nn


def trainable_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


class Cnn2d(nn.Module):
    """cnn2d.rs, Cnn2dSpec::default(): [B, 24, 11] as a 1-channel image → Conv(1→32, 3×3, pad 1)
    ReLU → Conv(32→64) ReLU → MaxPool 2×2 (burn's stride = kernel) → Linear(64·12·5 → 128) ReLU
    → Linear(128 → 1). The spec's dropout is 0, i.e. the identity, so it is left out.

    Rust: conv1 320 + conv2 18 496 + dense 491 648 + head 129 = 510 593 (asserted in
    stoker-zoo's lib.rs tests).

    `residual` is the spec's persistence skip (no parameters): the last observed value of each
    target (`targets`, indices into the features) is added to every output step. Loading a
    `cargo xtask export` needs only these arguments (see check_export.py)."""

    EXPECTED_PARAMS = 320 + 18_496 + 491_648 + 129

    def __init__(self, input_len=24, features=11, channels=(32, 64), hidden=128, outputs=1,
                 *, residual=False, targets=(0,)):
        super().__init__()
        self.residual, self.targets = residual, list(targets)
        layers, c = [], 1
        for out in channels:
            layers += [nn.Conv2d(c, out, 3, padding=1), nn.ReLU()]
            c = out
        self.net = nn.Sequential(
            *layers,
            nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(c * (input_len // 2) * (features // 2), hidden),
            nn.ReLU(),
            nn.Linear(hidden, outputs),
        )

    def forward(self, x):  # [B, L, F] → [B, outputs], f32 as stoker's `ac.full`
        y = self.net(x.unsqueeze(1)).float()
        if self.residual:  # step-major outputs: the targets' last values, once per step
            y = y + x[:, -1, self.targets].float().repeat(1, y.shape[1] // len(self.targets))
        return y


class LstmAttention(nn.Module):
    """lstm_attention.rs, LstmAttentionSpec::default(): 2 stacked LSTMs (hidden 128) over the whole
    96-step window; additive attention score_t = vᵀ·tanh(W·h_t) with W 128→64 (bias) and v 64→1
    (no bias), softmax over time in f32; [context ⊕ last hidden] → Linear(256 → 96·7). The
    defaults have no instance norm, no linear skip, recurrent_len = window, dropout 0.

    stoker's StepLstm has one bias per layer (on the input matmul); nn.LSTM has b_ih and b_hh,
    which only ever appear as their sum. b_hh is zeroed and frozen, so the trained model is the
    same while the layer stays nn.LSTM, PyTorch's fused (oneDNN) and fastest form.

    Rust: layer 1 7·512 + 512 + 128·512 = 69 632; layer 2 128·512 + 512 + 128·512 = 131 584;
    score_w 128·64 + 64 = 8 256; score_v 64; head 256·672 + 672 = 172 704; total 382 240.

    The spec's other options, off by default, as keyword arguments: `instance_norm` (each
    window normalised per feature over time, the forecast mapped back), `linear_skip` (a
    channel-independent Linear(input_len → output_len) from each target's series, added to
    the head: parameter `skip`), `recurrent_len` (the LSTMs read only the window's last steps;
    0 = all), `position_bias` (a learned score bias per attended step: parameter
    `position_bias` [1, T]), `segment` (channel-independent: each target's last steps cut into
    segments of this length, each embedded by Linear(segment → hidden) + ReLU (parameter
    `embed`); the LSTMs and attention run over one target's segments, and the head forecasts
    that target's output_len steps). `targets` are the predicted features' indices (default:
    all), outputs step-major."""

    EXPECTED_PARAMS = 69_632 + 131_584 + 8_256 + 64 + 172_704

    def __init__(self, features=7, hidden=128, layers=2, attention=64, outputs=96 * 7,
                 *, input_len=96, targets=None, instance_norm=False, linear_skip=False,
                 recurrent_len=0, position_bias=False, segment=0):
        super().__init__()
        self.targets = list(range(features)) if targets is None else list(targets)
        self.output_len = outputs // len(self.targets)
        self.instance_norm = instance_norm
        self.recurrent_len = min(recurrent_len, input_len) if recurrent_len else input_len
        # Whole segments only, as stoker reads them: the last len // segment · segment steps.
        self.segment = min(segment, self.recurrent_len)
        steps = self.recurrent_len
        if self.segment:
            steps = self.recurrent_len // self.segment
            self.recurrent_len = steps * self.segment
        self.embed = nn.Linear(self.segment, hidden) if self.segment else None
        lstm_in = hidden if self.segment else features
        self.lstm = nn.LSTM(lstm_in, hidden, num_layers=layers, batch_first=True)
        for name, p in self.lstm.named_parameters():
            if name.startswith("bias_hh"):
                nn.init.zeros_(p)
                p.requires_grad_(False)
        self.score_w = nn.Linear(hidden, attention)
        self.score_v = nn.Linear(attention, 1, bias=False)
        self.position_bias = nn.Parameter(torch.zeros(1, steps)) if position_bias else None
        self.head = nn.Linear(2 * hidden, self.output_len if self.segment else outputs)
        self.skip = nn.Linear(input_len, self.output_len) if linear_skip else None

    def forward(self, x):  # [B, T, F] → [B, output_len · targets]
        if self.instance_norm:  # burn's var is the unbiased one, as torch's default
            mean = x.mean(1, keepdim=True)
            std = (x.var(1, keepdim=True) + 1e-5).sqrt()
            x = (x - mean) / std
        batch, v = x.shape[0], len(self.targets)
        recurrent = x[:, x.shape[1] - self.recurrent_len:]
        if self.embed is not None:  # [B, T, F] → [B·V, segments, segment] → embedded
            recurrent = recurrent[:, :, self.targets].transpose(1, 2)
            recurrent = torch.relu(self.embed(recurrent.reshape(batch * v, -1, self.segment)))
        h, _ = self.lstm(recurrent)  # [B, T, H]
        scores = self.score_v(torch.tanh(self.score_w(h))).squeeze(-1).float()  # [B, T]
        if self.position_bias is not None:
            scores = scores + self.position_bias
        weights = torch.softmax(scores, dim=1).to(h.dtype)
        context = torch.bmm(weights.unsqueeze(1), h).squeeze(1)  # Σ_t w_t·h_t, [B, H]
        y = self.head(torch.cat([context, h[:, -1]], dim=1)).float()
        if self.embed is not None:
            y = y.view(batch, v, self.output_len).transpose(1, 2)
        if self.skip is None and not self.instance_norm:
            return y.reshape(batch, -1)
        y = y.reshape(batch, self.output_len, v)
        if self.skip is not None:  # the same map for every target's series
            y = y + self.skip(x[:, :, self.targets].transpose(1, 2)).transpose(1, 2).float()
        if self.instance_norm:
            y = y * std[:, :, self.targets] + mean[:, :, self.targets]
        return y.reshape(x.shape[0], -1)


def design_filterbank(edges_hz, taps, sample_rate):
    """signal/filterbank.rs: Hamming-windowed sinc low-passes (unity DC gain) at each edge, then
    the all-pass delay δ(n − (taps−1)/2); successive differences are the bands, which sum to
    the delay. Designed in f64, returned as f32 [bands, taps] (forward order)."""
    n = torch.arange(taps, dtype=torch.float64)
    t = n - (taps - 1) // 2
    window = 0.54 - 0.46 * torch.cos(2 * math.pi * n / (taps - 1))
    cumulative = []
    for f in edges_hz:
        fc = f / sample_rate
        h = 2 * fc * torch.special.sinc(2 * fc * t) * window  # sin(2π·fc·t)/(π·t), 2fc at t = 0
        cumulative.append(h / h.sum())
    cumulative.append((t == 0).double())
    previous = torch.zeros(taps, dtype=torch.float64)
    bands = []
    for h in cumulative:
        bands.append(h - previous)
        previous = h
    return torch.stack(bands).float()


class MultibandAnc(nn.Module):
    """multiband_anc.rs, MultibandAncSpec::default(): a fixed filterbank (3 bands, 129-tap FIRs,
    edges 500 / 2000 Hz at 16 kHz) splits the reference x; per band an MLP reads the band's
    last 256 samples → 384 tanh → 1, and the bands' outputs sum to the control sample y(n).
    linear_taps = 0 (no linear FIR), so the receptive field is 256 + 129 − 1 = 384.

    As in stoker, the band MLPs are stacked weights [bands, in, out] applied to every sliding
    window by one batched matmul (unfold + baddbmm). A grouped Conv1d (kernel 256, groups 3)
    computes the same thing; timed against it here it was no faster, so this keeps the form
    that mirrors the Rust code.

    Rust (BandDense weight [3, in, out] + bias [3, 1, out]; filterbank and secondary path are
    constants, not parameters): hidden 3·(256·384 + 384) = 296 064, head 3·(384 + 1) = 1 155;
    total 297 219.

    The spec's other options as keyword arguments: `layers` hidden band layers (parameters
    w1, b1 … w{layers+1}, b{layers+1}, the last one the linear head) and `linear_taps`, the
    linear FIR on the full-band reference beside the bands (parameter `linear`, oldest tap
    first), which widens the receptive field to max(384, linear_taps)."""

    EXPECTED_PARAMS = 3 * (256 * 384 + 384) + 3 * (384 + 1)

    def __init__(self, secondary_path, band_edges=(500.0, 2000.0), filter_taps=129, taps=256,
                 hidden=384, sample_rate=16_000, *, layers=1, linear_taps=0):
        super().__init__()
        bank = design_filterbank(band_edges, filter_taps, sample_rate)
        bands = bank.shape[0]
        # conv1d is a cross-correlation: time-reversed taps make it the causal convolution.
        self.register_buffer("filters", bank.flip(-1).unsqueeze(1))  # [bands, 1, filter_taps]
        self.register_buffer("secondary", secondary_path.flip(-1).view(1, 1, -1))

        def uniform(*shape, fan_in):  # nn.Linear's U(±1/√in), per band, as stoker's BandDense
            bound = 1.0 / math.sqrt(fan_in)
            return nn.Parameter(torch.empty(*shape).uniform_(-bound, bound))

        inputs = taps
        for k, out in enumerate([hidden] * layers + [1], start=1):
            setattr(self, f"w{k}", uniform(bands, inputs, out, fan_in=inputs))
            setattr(self, f"b{k}", uniform(bands, 1, out, fan_in=inputs))
            inputs = out
        self.layers = layers
        # Starts at zero as in stoker (the least-squares warm start sets it before training).
        self.linear = nn.Parameter(torch.zeros(linear_taps)) if linear_taps else None
        self.taps, self.filter_taps = taps, filter_taps
        self.receptive_field = max(taps + filter_taps - 1, linear_taps)

    def forward(self, x):  # [B, I, F] (column 0 = reference x) → [B, I − rf + 1] control samples
        batch, n = x.shape[0], x.shape[1] - self.receptive_field + 1
        reference = x[:, :, 0].float()
        needed = n + self.taps + self.filter_taps - 2  # the samples the band outputs read
        with torch.autocast("cpu", enabled=False):  # the fixed filterbank stays f32, as in stoker
            bands = F.conv1d(reference[:, -needed:].unsqueeze(1), self.filters)  # [B, K, N + taps − 1]
        windows = bands.unfold(2, self.taps, 1)  # [B, K, N, taps], a view
        k = windows.shape[1]
        h = windows.transpose(0, 1).reshape(k, batch * n, self.taps)
        for i in range(1, self.layers + 1):
            h = torch.tanh(torch.baddbmm(getattr(self, f"b{i}"), h, getattr(self, f"w{i}")))  # [K, B·N, hidden]
        last = self.layers + 1
        y = torch.baddbmm(getattr(self, f"b{last}"), h, getattr(self, f"w{last}")).float().sum(0)  # bands summed, [B·N, 1]
        y = y.view(batch, n)
        if self.linear is not None:
            taps = self.linear.shape[0]
            windows = reference[:, -(n + taps - 1):].unfold(1, taps, 1)  # [B, N, linear_taps]
            y = y + (windows @ self.linear.float()).float()
        return y

    def loss(self, x, d):
        """mean(e²), e = d − S * y: what the error microphone hears (saturation 0, a linear
        speaker). `d` [B, chunk] is the disturbance at the chunk's last samples; S in f32."""
        y = self(x)
        with torch.autocast("cpu", enabled=False):
            anti = F.conv1d(y.float().unsqueeze(1), self.secondary).squeeze(1)
            return (d - anti).square().mean()
