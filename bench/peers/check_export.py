"""Checks a `cargo xtask export` against stoker itself: loads export/model.safetensors into the
PyTorch peer class of models.py with `load_state_dict(strict=True)`, runs it on every window of
stoker's test predictions and prints the largest absolute difference from
predict/predictions.parquet.

    python check_export.py ARTIFACTS_DIR [--tolerance T]

ARTIFACTS_DIR is a task's artifacts directory (artifacts/<task>) after prepare, train, predict
and export. The windows are read from the prepared window store (data/windows.bin, the
normalised inputs stoker's predict read), not rebuilt from the CSV: predictions.parquet holds
only outputs, and re-running prepare's cleaning in Python would test that instead of the
export. Each prediction row's timestamp locates its window in the store (the first output
step's row is input_len − 1 + horizon rows after the window's start). Outputs are mapped to the
target's unit with model.json's normalisation when the metrics are in raw units, as predict
does. The peer runs in f32 without autocast.

An ANC export is compared with predict/anti_noise.wav instead: the controller over the whole
reference column x of the store, from zero history (predict's `control_signal`), in the
recording's units (× the disturbance RMS).

Exits 0 with "skipped: torch is not importable" (or pyarrow) where those are missing; 1 when
the difference exceeds the tolerance (default 1e-3 of the largest |output|, floor 1e-4);
2 on a bad artifacts directory.
"""

import argparse
import json
import struct
import sys
from pathlib import Path

try:
    import torch
except ImportError:
    print("skipped: torch is not importable")
    sys.exit(0)
try:
    import numpy as np
    import pyarrow.parquet as pq
except ImportError as e:
    print(f"skipped: {e.name} is not importable")
    sys.exit(0)

import models

DTYPES = {"F32": np.float32}


def read_safetensors(path):
    """name → tensor, by the format's spec (u64 header length, JSON header, raw data)."""
    raw = path.read_bytes()
    (length,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + length])
    header.pop("__metadata__", None)
    data = raw[8 + length :]
    tensors = {}
    for name, info in header.items():
        if info["dtype"] not in DTYPES:
            raise SystemExit(f"{path}: tensor {name}: dtype {info['dtype']}, expected F32")
        start, end = info["data_offsets"]
        array = np.frombuffer(data[start:end], dtype="<f4").reshape(info["shape"])
        tensors[name] = torch.from_numpy(array.copy())
    return tensors


def peer(meta):
    """The models.py class the export's model spec describes, shaped like stoker's."""
    spec, window = meta["model"], meta["window"]
    features, targets = len(meta["features"]), meta["targets"]
    outputs = window["output_len"] * len(targets)
    kind = spec["kind"]
    if kind == "cnn2d":
        return models.Cnn2d(window["input_len"], features, tuple(spec["channels"]), spec["hidden"],
                            outputs, residual=spec["residual"], targets=targets)
    if kind == "lstm-attention":
        return models.LstmAttention(features, spec["hidden"], spec["layers"], spec["attention"],
                                    outputs, input_len=window["input_len"], targets=targets,
                                    instance_norm=spec["instance_norm"],
                                    linear_skip=spec["linear_skip"],
                                    recurrent_len=spec["recurrent_len"],
                                    position_bias=spec.get("position_bias", False),
                                    segment=spec.get("segment", 0))
    if kind == "multiband-anc":
        anc = meta["anc"]
        return models.MultibandAnc(torch.tensor(anc["secondary_path"]), tuple(spec["band_edges"]),
                                   spec["filter_taps"], spec["taps"], spec["hidden"],
                                   anc["sample_rate"], layers=spec["layers"],
                                   linear_taps=spec["linear_taps"])
    raise SystemExit(f"model.json: unknown model kind {kind}")


def window_store(path):
    """(matrix [rows, cols] f32, timestamps [rows] i64) of stoker's window store."""
    raw = path.read_bytes()
    if raw[:8] != b"STKWSTOR":
        raise SystemExit(f"{path}: not a stoker window store")
    _version, cols, rows = struct.unpack("<IIQ", raw[8:24])
    matrix_at, times_at, _flags_at = struct.unpack("<QQQ", raw[24:48])
    matrix = np.frombuffer(raw, dtype="<f4", count=rows * cols, offset=matrix_at).reshape(rows, cols)
    times = np.frombuffer(raw, dtype="<i8", count=rows, offset=times_at)
    return matrix, times


def float_wav(path):
    """The samples of a mono 32-bit float WAV (what predict writes), walking the RIFF chunks."""
    raw = path.read_bytes()
    if raw[:4] != b"RIFF" or raw[8:12] != b"WAVE":
        raise SystemExit(f"{path}: not a WAV file")
    at, fmt = 12, None
    while at + 8 <= len(raw):
        tag, size = raw[at : at + 4], struct.unpack("<I", raw[at + 4 : at + 8])[0]
        body = raw[at + 8 : at + 8 + size]
        if tag == b"fmt ":
            fmt = struct.unpack("<HHIIHH", body[:16])
            if fmt[0] == 0xFFFE:  # WAVE_FORMAT_EXTENSIBLE: the real format opens the subformat
                fmt = (struct.unpack("<H", body[24:26])[0],) + fmt[1:]
        elif tag == b"data":
            if fmt is None or fmt[0] != 3 or fmt[1] != 1 or fmt[5] != 32:
                raise SystemExit(f"{path}: expected mono 32-bit float samples, format {fmt}")
            return np.frombuffer(body, dtype="<f4").astype(np.float64)
        at += 8 + size + (size & 1)
    raise SystemExit(f"{path}: no data chunk")


def compare(ours, stoker, what, tolerance):
    if ours.shape != stoker.shape:
        raise SystemExit(f"{len(ours)} outputs, {what} has {len(stoker)}")
    diff = np.abs(ours - stoker)
    scale = float(np.abs(stoker).max())
    tolerance = tolerance if tolerance is not None else max(1e-3 * scale, 1e-4)
    print(f"max abs difference {diff.max():.3g} against {what} (mean {diff.mean():.3g}; "
          f"largest |stoker| {scale:.4g}; tolerance {tolerance:.3g})")
    sys.exit(0 if diff.max() <= tolerance else 1)


def check_anc(model, meta, root, tolerance, chunk=8192):
    manifest = json.loads((root / "data" / "manifest.json").read_text())
    matrix, _ = window_store(root / "data" / manifest["store_file"])
    x = matrix[:, 0]
    history = model.receptive_field - 1
    padded = np.concatenate([np.zeros(history, dtype=np.float32), x])
    ys = []
    with torch.no_grad():
        for s in range(0, len(x), chunk):
            part = padded[s : s + chunk + history]
            ys.append(model(torch.from_numpy(part.copy()).view(1, -1, 1)).view(-1).numpy())
    # Scaled in f32, as predict writes it.
    ours = (np.concatenate(ys) * np.float32(meta["anc"]["disturbance_rms"])).astype(np.float64)
    print(f"{len(x)} samples of the recording:", end=" ")
    compare(ours, float_wav(root / "predict" / "anti_noise.wav"), "predict/anti_noise.wav",
            tolerance)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("artifacts", type=Path)
    parser.add_argument("--tolerance", type=float, default=None)
    args = parser.parse_args()
    root = args.artifacts
    export = root / "export"
    try:
        meta = json.loads((export / "model.json").read_text())
    except OSError as e:
        print(f"error: {e}: run cargo xtask export first", file=sys.stderr)
        sys.exit(2)
    torch.set_num_threads(2)
    model = peer(meta)
    model.load_state_dict(read_safetensors(export / meta["weights"]), strict=True)
    model.eval()
    kind = meta["model"]["kind"]
    print(f"loaded {export / meta['weights']} into models.{type(model).__name__} "
          f"(strict, {len(meta['tensors'])} tensors, checkpoint {meta['checkpoint']['name']} "
          f"epoch {meta['checkpoint']['epoch']})")
    if kind == "multiband-anc":
        check_anc(model, meta, root, args.tolerance)

    manifest = json.loads((root / "data" / "manifest.json").read_text())
    matrix, times = window_store(root / "data" / manifest["store_file"])
    table = pq.read_table(root / "predict" / "predictions.parquet")
    stamps = table.column("timestamp").cast("int64").to_numpy()
    steps = table.column("step").to_numpy()
    target_names = table.column("target").to_pylist()
    stoker = table.column("prediction").to_numpy().astype(np.float64)

    window = meta["window"]
    input_len, horizon = window["input_len"], window["horizon"]
    targets = meta["targets"]
    first = [meta["features"][targets[0]]["name"]]
    row_of = {int(t): i for i, t in enumerate(times)}
    heads = [i for i in range(len(stamps)) if steps[i] == 1 and target_names[i] == first[0]]
    starts = np.array([row_of[int(stamps[i])] - (input_len - 1 + horizon) for i in heads])

    outputs = []
    with torch.no_grad():
        for batch in np.array_split(starts, max(1, len(starts) // 1024)):
            x = np.stack([matrix[s : s + input_len] for s in batch])
            outputs.append(model(torch.from_numpy(x)).double().numpy())
    ours = np.concatenate(outputs)  # [windows, output_len · targets], step-major
    if meta["metric_scale"] == "raw":
        mean = np.array([meta["features"][t]["mean"] for t in targets])
        std = np.array([meta["features"][t]["std"] for t in targets])
        ours = ours * np.tile(std, window["output_len"]) + np.tile(mean, window["output_len"])
    ours = ours.reshape(-1)
    print(f"{len(starts)} test windows, {len(ours)} values ({meta['target_unit']}):", end=" ")
    compare(ours, stoker, "predict/predictions.parquet", args.tolerance)


if __name__ == "__main__":
    main()
