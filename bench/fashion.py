"""Benchmark: the shipped Fashion-MNIST recipe (`--config fashion`), one whole process per seed.

    python bench/fashion.py [--seeds 3] [--data DIR]

Each seed runs `cnn train --quiet --config fashion --data DIR --seed N` in a fresh folder; wall
time is measured around the process, the test accuracy read from its run.json. The data comes
from --data, else $CNN_FASHION_DATA, else /usr/share/datasets/fashion-mnist (Debian's
dataset-fashion-mnist). Prints a Markdown table naming the CPU.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run import CNN, accuracy_of_run, cpu_name, library_versions, machine_class, peak_mb_of

TARGET = 0.90


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument(
        "--data", default=os.environ.get("CNN_FASHION_DATA") or "/usr/share/datasets/fashion-mnist"
    )
    args = parser.parse_args()
    scratch = Path(tempfile.mkdtemp(prefix="cnn-bench-fashion-"))
    rows = []
    for seed in range(args.seeds):
        command = [
            "train",
            "--quiet",
            "--config",
            "fashion",
            "--data",
            args.data,
            "--seed",
            str(seed),
        ]
        folder = Path(tempfile.mkdtemp(dir=scratch))
        result = peak_mb_of([*CNN, *command], folder)
        if result["code"] != 0:
            print(
                f"seed {seed} failed ({result['code']}):\n{result['err'][-2000:]}", file=sys.stderr
            )
            return 1
        record = json.loads(next(folder.glob("logs/fit/*/run.json")).read_text())
        rows.append(
            (
                f"cnn {' '.join(command)}",
                result["wall"],
                accuracy_of_run(folder),
                record["metrics"]["epochs_completed"],
                record["accelerator"]["dtype_policy"],
            )
        )
        print(
            f"  seed {seed}: {result['wall']:6.2f} s, test accuracy {rows[-1][2]:.4f}", flush=True
        )
    walls = [r[1] for r in rows]
    lines = [
        f"Made by `python bench/fashion.py --seeds {args.seeds}` on {datetime.date.today()}.",
        "",
        f"Machine: {cpu_name()}, class **{machine_class()}**, {os.cpu_count()} cores, "
        f"{platform.platform()}; {library_versions()}.",
        "",
        "| command | wall (s) | epochs | compute | test accuracy |",
        "| --- | --- | --- | --- | --- |",
    ]
    lines += [f"| `{c}` | {w:.2f} | {e} | {d} | {a:.4f} |" for c, w, a, e, d in rows]
    lines += [
        "",
        f"Median wall {statistics.median(walls):.2f} s ({min(walls):.2f}-{max(walls):.2f}); "
        f"every seed >= {TARGET:.2f}: {'yes' if all(r[2] >= TARGET for r in rows) else '**no**'}.",
    ]
    print("\n" + "\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
