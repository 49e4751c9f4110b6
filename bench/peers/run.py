"""PyTorch peers of stoker's model benchmark (`cargo xtask bench` runs this when PyTorch is
importable): training-step (forward, MSE loss, backward, Adam) and batched-inference
(inference_mode forward) samples/s of the zoo's three architectures on their reference shapes
(crates/stoker-bench/src/reference.rs), in f32 and bf16 autocast with f32 master weights, on 2 threads. Each
figure is the median of 5 timed runs of 10 steps after 3 warm-up steps, as stoker's."""

import argparse
import json
import statistics
import sys
import time

try:
    import torch
except ImportError as e:  # exit status 3 is how the Rust bench knows to skip the peers
    print(f"skipped: PyTorch not importable ({e})", file=sys.stderr)
    sys.exit(3)

import torch.nn.functional as F

import models

THREADS = 2
PRECISIONS = {"f32": None, "bf16-mixed": torch.bfloat16}


def uniform(*shape):  # U(−0.5, 0.5) inputs and targets, as stoker-bench's random_batch
    return torch.rand(*shape) - 0.5


def cnn2d():
    x, y = uniform(512, 24, 11), uniform(512, 1)
    return models.Cnn2d(), x, lambda m: F.mse_loss(m(x), y), 512, 512


def lstm_attention():
    x, y = uniform(256, 96, 7), uniform(256, 96 * 7)
    return models.LstmAttention(), x, lambda m: F.mse_loss(m(x), y), 256, 256


def multiband_anc():
    """stoker-bench's anc_reference(): one chunk of 1 024 error samples per training step; the input
    holds the reference x (column 0) over receptive_field − 1 + |S| − 1 + 1 024 samples, so the
    forward yields the chunk's 1 024 + |S| − 1 control samples (what inference counts, as
    stoker-bench counts the product of the output's dims)."""
    chunk, s_taps = 1024, 256
    k = torch.arange(s_taps, dtype=torch.float32)
    secondary = torch.exp(-k / 40) * torch.sin(k * 0.3)
    model = models.MultibandAnc(secondary)
    x = uniform(1, model.receptive_field - 1 + s_taps - 1 + chunk, 2)
    d = uniform(1, chunk)
    return model, x, lambda m: m.loss(x, d), chunk, chunk + s_taps - 1


REFERENCES = {"cnn2d": cnn2d, "lstm_attention": lstm_attention, "multiband_anc": multiband_anc}


def throughput(samples_per_call, steps, repeats, call):
    """Median samples/s of `repeats` timed runs of `steps` calls, after min(steps, 3) warm-up
    calls (as stoker's `throughput`)."""
    for _ in range(min(steps, 3)):
        call()
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(steps):
            call()
        rates.append(steps * samples_per_call / (time.perf_counter() - start))
    return statistics.median(rates)


def adam(params):
    # burn's Adam defaults (β 0.9 / 0.999, ε 1e-5), stoker's bench lr; the fused CPU kernel is
    # PyTorch's fastest Adam (falls back where a build lacks it).
    try:
        return torch.optim.Adam(params, lr=1e-4, eps=1e-5, fused=True)
    except (RuntimeError, TypeError, ValueError):
        return torch.optim.Adam(params, lr=1e-4, eps=1e-5)


def bench(build, dtype, steps, repeats):
    """(train samples/s, infer samples/s, parameters, expected parameters); a fresh model per
    precision, as stoker's bench_model."""
    torch.manual_seed(0)
    model, x, loss_of, train_samples, infer_samples = build()
    params = [p for p in model.parameters() if p.requires_grad]
    optim = adam(params)

    def autocast():
        return torch.autocast("cpu", dtype=dtype or torch.bfloat16, enabled=dtype is not None)

    def train_step():
        optim.zero_grad(set_to_none=True)
        with autocast():
            loss = loss_of(model)  # the models return f32, so the loss is computed in f32
        loss.backward()
        optim.step()
        loss.item()  # one read per step, as stoker's trainer

    model.train()
    train = throughput(train_samples, steps, repeats, train_step)

    model.eval()

    def infer_step():
        with torch.inference_mode(), autocast():
            return model(x)

    out = infer_step()  # windows for a forecaster, control samples for ANC
    assert infer_samples in (out.shape[0], out.numel()), (tuple(out.shape), infer_samples)
    infer = throughput(infer_samples, steps, repeats, infer_step)
    return train, infer, sum(p.numel() for p in params), model.EXPECTED_PARAMS


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="1 run of 2 steps: checks the harness only")
    parser.add_argument("--json", metavar="PATH", help="write the figures as JSON here ('-': stdout)")
    parser.add_argument("--model", action="append", choices=list(REFERENCES), help="only this model (repeatable; all by default)")
    args = parser.parse_args()
    torch.set_num_threads(THREADS)
    steps, repeats = (2, 1) if args.quick else (10, 5)
    # With --json - stdout carries only the JSON, so the table goes to stderr.
    out = sys.stderr if args.json == "-" else sys.stdout
    report = {"torch_version": torch.__version__, "threads": THREADS}
    print(f"PyTorch {torch.__version__}, {THREADS} threads{' (quick)' if args.quick else ''}", file=out)
    print(f"{'model':<16} {'precision':<11} {'params (stoker)':>19} {'train samples/s':>16} {'infer samples/s':>16}", file=out)
    for key, build in REFERENCES.items():
        if args.model and key not in args.model:
            continue
        report[key] = {}
        for name, dtype in PRECISIONS.items():
            try:
                train, infer, params, expected = bench(build, dtype, steps, repeats)
            except RuntimeError as e:
                # A precision this build cannot run here (oneDNN has no bf16 LSTM without
                # AVX-512, say): that row has no figures, the others still run.
                reason = str(e).splitlines()[0]
                report[key][name] = {"error": reason}
                print(f"{key:<16} {name:<11} not supported here: {reason[:90]}", file=out, flush=True)
                continue
            report[key][name] = {"train_samples_per_s": train, "infer_samples_per_s": infer}
            count = f"{params} ({expected})" + ("" if params == expected else " MISMATCH")
            print(f"{key:<16} {name:<11} {count:>19} {train:>16.0f} {infer:>16.0f}", file=out, flush=True)
    text = json.dumps(report, indent=2)
    if args.json == "-":
        print(text)
    elif args.json:
        with open(args.json, "w") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    main()
