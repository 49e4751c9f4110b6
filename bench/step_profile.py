#!/usr/bin/env python3
"""Where a training step's (or inference batch's) time goes, per reference shape, by category.

Runs `xtask bench-worker` (timed training steps of one bench reference model, one process)
under `perf record`, then sorts the sampled symbols into categories and prints each one's
share of the step and its milliseconds. Needs Linux `perf` (perf_event_paranoid <= 2 for a
process of your own); like the PyTorch peers, optional and never part of CI.

    cargo build --release -p xtask
    python3 bench/step_profile.py                      # every model, f32 and bf16-mixed
    python3 bench/step_profile.py --model multiband_anc --bf16-only --steps 2000
    python3 bench/step_profile.py --model lstm_attention --infer
"""

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile

# (model key, windows a step): the bench's reference batches.
MODELS = [("cnn2d", 512), ("lstm_attention", 256), ("multiband_anc", 1)]

# First match wins; patterns are searched in the demangled symbol.
CATEGORIES = [
    ("products: micro-kernels", r"bf16_avx512::(kernel|gemv|gemv_columns|outer)$|microkernel|matvec"),
    ("products: packing, blocking", r"pack_a|pack_b|gemm_common|gemm_f32|gemm::|bf16_product|native::matmul"),
    ("conv lowering (im2col, col2im)", r"conv::|planes|col2im|im2col|gather_dz"),
    ("casts f32 <-> bf16", r"f32_to_bf16|bf16_to_f32|float_cast|FP16Fallback|narrow|widen"),
    ("activations, gates, bias", r"dense::|activation|tanh|sigm|relu|softmax|lstm|gate|column_sums|pool"),
    ("optimizer (Adam)", r"adam"),
    ("zeroing, copies, allocation", r"memset|memmove|memcpy|clear_page|contiguous|gemm::transposed|copy_|_mi_|mi_|malloc|free|from_iter|page_fault|do_anonymous"),
    ("burn ops (conv, autodiff, others)", r"burn"),
    ("threads: waiting, scheduling", r"sched|futex|spin|rayon|crossbeam|yield|syscall|task_switch|softirq|rseq|exit_to_user|\[k\]"),
]


def categorise(symbol, kernel):
    for name, pattern in CATEGORIES:
        if re.search(pattern, symbol) or (kernel and pattern.endswith(r"\[k\]")):
            return name
    return "other (inlined closures, iterators)"


def profile(xtask, model, batch, steps, bf16, infer, frequency):
    with tempfile.TemporaryDirectory() as tmp:
        data = os.path.join(tmp, "perf.data")
        command = [xtask, "bench-worker", "--model", model, "--global-batch", str(batch),
                   "--steps", str(steps)] + (["--bf16"] if bf16 else []) + (["--infer"] if infer else [])
        env = dict(os.environ, RAYON_NUM_THREADS=os.environ.get("RAYON_NUM_THREADS", "2"))
        run = subprocess.run(["perf", "record", "-q", "-F", str(frequency), "-o", data, "--"]
                             + command, env=env, capture_output=True, text=True)
        if run.returncode != 0:
            sys.exit(f"perf record {' '.join(command)} failed:\n{run.stderr}")
        figures = json.loads(run.stdout.strip().splitlines()[-1])
        report = subprocess.run(["perf", "report", "-i", data, "--stdio", "--no-children",
                                 "--sort", "symbol"], capture_output=True, text=True, check=True)
    shares = {}
    for line in report.stdout.splitlines():
        m = re.match(r"\s*([\d.]+)%\s+\[(.)\]\s+(.*?)\s*$", line)
        if m:
            # perf pads the symbol column and may append empty columns ("-").
            symbol = re.split(r"\s{2,}", m.group(3))[0]
            name = categorise(symbol, m.group(2) == "k")
            shares[name] = shares.get(name, 0.0) + float(m.group(1)) / 100
    return figures, shares


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--xtask", default="target/release/xtask")
    ap.add_argument("--model", action="append", help="a reference model key (repeatable)")
    ap.add_argument("--steps", type=int, default=300, help="timed steps a profile")
    ap.add_argument("--bf16-only", action="store_true")
    ap.add_argument("--infer", action="store_true", help="batched inference, not training steps")
    ap.add_argument("--frequency", type=int, default=2000, help="perf samples/s")
    args = ap.parse_args()
    for model, batch in MODELS:
        if args.model and model not in args.model:
            continue
        for bf16 in ([True] if args.bf16_only else [False, True]):
            # The step is the main thread's; the threads' samples together span about
            # threads × the step, so shares are of all sampled time.
            figures, shares = profile(args.xtask, model, batch, args.steps, bf16, args.infer,
                                     args.frequency)
            step_ms = figures["step_s"] * 1e3
            precision = "bf16-mixed" if bf16 else "f32"
            what = "an inference batch" if args.infer else "a step"
            print(f"\n{model} {precision}: {step_ms:.2f} ms {what} "
                  f"({figures['samples_per_s']:.0f} samples/s, under perf)")
            for name, share in sorted(shares.items(), key=lambda kv: -kv[1]):
                print(f"  {name:<34} {100 * share:5.1f} %  {share * step_ms:6.2f} ms")


if __name__ == "__main__":
    main()
