"""Benchmark: every `cnn export` format and precision of one model, as a table.

    python bench/export.py [--model models/digits_recognition_cnn.h5] [--out DIR]

Runs `cnn export --json` for SavedModel, LiteRT and ONNX in float32, float16 and int8 (each a
process of its own: the export and its check on the whole test set), then `cnn predict --index
10 --model` on every file and on the .h5 itself, and prints a Markdown table: the export's and
Keras's test accuracy, the share of agreeing predictions, the largest probability difference,
file size and how much smaller than the same format in float32, time per image at batch 1
(export and Keras, in the same process), and whether predict's answer equals the .h5's.
Reads the test data as `cnn evaluate` does (CNN_MNIST_DATA). Prints the CPU and its class.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

from run import cpu_name, machine_class

ROOT = Path(__file__).resolve().parent.parent
CASES = [
    ("saved_model", "none"),
    ("litert", "none"),
    ("litert", "float16"),
    ("litert", "int8"),
    ("onnx", "none"),
    ("onnx", "float16"),
    ("onnx", "int8"),
]


def cnn(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "cnn_mnist", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=900,
    )


def answer(model: Path) -> str:
    """`cnn predict --index 10`'s line, without the probabilities' last digits."""
    done = cnn("predict", "--index", "10", "--model", str(model), "--no-draw")
    if done.returncode:
        return f"error: {done.stderr.strip().splitlines()[-1]}"
    return done.stdout.strip().split(" (")[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="models/digits_recognition_cnn.h5")
    parser.add_argument("--out", default="models/exports", help="where the exports go")
    args = parser.parse_args()
    model, out = ROOT / args.model, ROOT / args.out  # the processes run in the repository
    rows, sizes = [], {}
    reference = answer(model)
    for fmt, quantize in CASES:
        name = f"digits_{quantize if quantize != 'none' else 'float32'}"
        path = out / (
            name + {"saved_model": "_saved_model", "litert": ".tflite", "onnx": ".onnx"}[fmt]
        )
        start = time.perf_counter()
        done = cnn(
            "export",
            "--model",
            str(model),
            "--format",
            fmt,
            "--quantize",
            quantize,
            "--out",
            str(path),
            "--json",
            "--quiet",
        )
        wall = time.perf_counter() - start
        if done.returncode:
            rows.append([fmt, quantize, "error: " + done.stderr.strip()[-200:]] + [""] * 9)
            continue
        c = json.loads(done.stdout)["checks"]
        sizes[(fmt, quantize)] = c["bytes"]
        smaller = sizes.get((fmt, "none"), c["bytes"]) / c["bytes"]
        said = answer(path)
        rows.append(
            [
                fmt,
                "float32" if quantize == "none" else quantize,
                f"{c['keras_accuracy']:.4f}",
                f"{c['export_accuracy']:.4f}",
                f"{c['accuracy_drop_points']:+.2f}",
                f"{c['agreement']:.2%}",
                f"{c['max_prob_diff']:.2g}",
                f"{c['bytes'] / 1e6:.2f}",
                f"{smaller:.1f}x",
                f"{c['ms_per_image']:.3f} / {c['keras_ms_per_image']:.3f}",
                f"{wall:.1f}",
                "yes" if said == reference else f"NO: {said}",
            ]
        )
        print(" | ".join(rows[-1]), file=sys.stderr, flush=True)  # kept if a later one fails
    print(
        f"CPU: {cpu_name()} ({machine_class()}); model {model} ({model.stat().st_size / 1e6:.2f}"
        f" MB); `cnn predict --index 10` with the .h5: {reference}\n"
    )
    head = [
        "format",
        "precision",
        "Keras acc.",
        "export acc.",
        "drop (points)",
        "agree",
        "max prob diff",
        "MB",
        "smaller than float32",
        "ms/image batch 1 (export / Keras)",
        "export + check (s)",
        "predict --index 10 = .h5",
    ]
    print("| " + " | ".join(head) + " |")
    print("|" + " --- |" * len(head))
    for row in rows:
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
