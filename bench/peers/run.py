"""PyTorch peers of stoker's model benchmark (`cargo xtask bench` runs this when PyTorch is
importable): training-step (forward, loss, backward, Adam) and batched-inference throughput on
the reference shapes, f32 and torch.autocast bf16, 2 threads; medians of 5 timed runs of 10
steps after 3 warm-up steps. Writes the figures as JSON shaped like stoker's."""

import argparse
import json
import statistics
import sys
import time

try:
    import torch
except ImportError as e:  # the Rust bench reads exit status 3 as "skip"
    print(f"skipped: PyTorch not importable ({e})", file=sys.stderr)
    sys.exit(3)

import models

PRECISIONS = {"f32": None, "bf16-mixed": torch.bfloat16}


def references():
    """(key, model, inputs, loss(output) → scalar, samples per train step, per forward)."""
    g = torch.Generator().manual_seed(1)
    rand = lambda *shape: torch.rand(*shape, generator=g) - 0.5
    cnn_x, cnn_y = rand(512, 24, 11), rand(512, 1)
    lstm_x, lstm_y = rand(256, 96, 7), rand(256, 96 * 7)
    anc = models.MultibandAnc()
    chunk, secondary_taps = 1024, 256
    # As stoker's reference: one chunk of 1 024 error samples with the secondary path's history.
    anc_x = rand(1, (256 + 129 - 1) - 1 + secondary_taps - 1 + chunk)
    anc_d = rand(1, chunk)
    k = torch.arange(secondary_taps, dtype=torch.float32)
    secondary = torch.exp(-k / 40) * torch.sin(k * 0.3)
    mse = torch.nn.functional.mse_loss
    return [
        ("cnn2d", models.Cnn2d(), cnn_x, lambda out: mse(out.float(), cnn_y), 512, 512),
        ("lstm_attention", models.LstmAttention(), lstm_x, lambda out: mse(out.float(), lstm_y), 256, 256),
        ("multiband_anc", anc, anc_x,
         lambda out: models.anc_residual(out.float(), anc_d, secondary).pow(2).mean(),
         chunk, chunk + secondary_taps - 1),
    ]


def throughput(samples, steps, repeats, call):
    for _ in range(min(steps, 3)):
        call()
    rates = []
    for _ in range(repeats):
        t = time.perf_counter()
        for _ in range(steps):
            call()
        rates.append(steps * samples / (time.perf_counter() - t))
    return statistics.median(rates)


def bench(model, x, loss_of, train_samples, infer_samples, dtype, steps, repeats):
    optim = torch.optim.Adam(model.parameters(), lr=1e-4)
    autocast = lambda: torch.autocast("cpu", dtype=dtype, enabled=dtype is not None)

    def train_step():
        optim.zero_grad(set_to_none=True)
        with autocast():
            loss = loss_of(model(x))
        loss.backward()
        optim.step()
        loss.item()  # one sync per step, as stoker's loss read

    def infer():
        with torch.inference_mode(), autocast():
            model(x).float()

    return throughput(train_samples, steps, repeats, train_step), throughput(infer_samples, steps, repeats, infer)


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="2 steps, 1 run: checks the harness")
    parser.add_argument("--json", help="write the figures here ('-' for stdout)")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    steps, repeats = (2, 1) if args.quick else (10, 5)
    report = {"torch_version": torch.__version__, "threads": args.threads}
    print(f"{'model':<16} {'precision':<11} {'params':>8} {'train samples/s':>16} {'infer samples/s':>16}   (PyTorch {torch.__version__})")
    for key, model, x, loss_of, train_samples, infer_samples in references():
        params = sum(p.numel() for p in model.parameters())
        report[key] = {}
        for name, dtype in PRECISIONS.items():
            train, infer = bench(model, x, loss_of, train_samples, infer_samples, dtype, steps, repeats)
            report[key][name] = {"train_samples_per_s": train, "infer_samples_per_s": infer, "parameters": params}
            print(f"{key:<16} {name:<11} {params:>8} {train:>16.0f} {infer:>16.0f}")
    if args.json == "-":
        json.dump(report, sys.stdout, indent=1)
    elif args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=1)


if __name__ == "__main__":
    main()
