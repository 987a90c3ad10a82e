"""Benchmark: `cnn inspect --index 10` as a whole process, TensorFlow's import included.

    python bench/inspect_time.py [--model M.h5] [--reps 3] [--data PATH]

Without --model, a quick model is trained first (`cnn train --set data.limit_train=2000`, one
epoch) in a temporary folder; its time is not part of the table. Each run is a fresh process in a
fresh output folder. Also times `import tensorflow` alone (the part no command that needs
TensorFlow can avoid) and prints the CPU model, its core count and the load average, since other
work on a shared machine slows everything down.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from run import cpu_name  # bench/run.py, beside this file

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable
TARGET_S = 6.0


def timed(argv: list[str], cwd: Path, env: dict) -> float:
    start = time.perf_counter()
    done = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"failed ({done.returncode}): {' '.join(argv)}\n{done.stderr}")
    return wall


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="a model saved by `cnn train` [default: train one]")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--index", type=int, default=10)
    parser.add_argument(
        "--data",
        default=os.environ.get("CNN_MNIST_DATA") or str(ROOT.parent / "shared" / "data" / "mnist"),
    )
    args = parser.parse_args()

    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    scratch = Path(tempfile.mkdtemp(prefix="cnn-bench-inspect-"))
    model = Path(args.model).resolve() if args.model else scratch / "m.h5"
    if not args.model:
        print(f"Training a quick model into {model} ...", flush=True)
        timed(
            [
                PY,
                "-m",
                "cnn_mnist",
                "train",
                "-q",
                "--set",
                "data.limit_train=2000",
                "--model-path",
                str(model),
                "--data",
                args.data,
            ],
            scratch,
            env,
        )

    command = [
        PY,
        "-m",
        "cnn_mnist",
        "inspect",
        "--index",
        str(args.index),
        "--model",
        str(model),
        "--data",
        args.data,
        "-q",
    ]
    rows = []
    for rep in range(args.reps):
        tf = timed(
            [PY, "-c", "from cnn_mnist.core.runtime import import_tensorflow; import_tensorflow()"],
            scratch,
            env,
        )
        wall = timed([*command, "--out", str(scratch / f"out-{rep}")], scratch, env)
        rows.append((wall, tf, os.getloadavg()[0]))
        print(f"  run {rep + 1}: {wall:.2f} s (import TensorFlow alone {tf:.2f} s)", flush=True)

    walls = [r[0] for r in rows]
    imports = [r[1] for r in rows]
    print(
        f"\nCPU: {cpu_name()}, {os.cpu_count()} cores; load average during the runs "
        f"{min(r[2] for r in rows):.1f}-{max(r[2] for r in rows):.1f}"
    )
    print(f"Command: cnn inspect --index {args.index} --model {model.name} (whole process)\n")
    print("| job | median (s) | fastest | slowest | target |")
    print("| --- | --- | --- | --- | --- |")
    print(
        f"| `cnn inspect --index {args.index}` | {statistics.median(walls):.2f} | "
        f"{min(walls):.2f} | {max(walls):.2f} | <= {TARGET_S:.0f} s |"
    )
    print(
        f"| `import tensorflow` alone | {statistics.median(imports):.2f} | {min(imports):.2f} "
        f"| {max(imports):.2f} | |"
    )
    if statistics.median(walls) > TARGET_S:
        print(
            f"\nAbove the {TARGET_S:.0f} s target: compare with `import tensorflow` alone, "
            "and with the load average (a shared machine)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
