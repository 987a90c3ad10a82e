"""Benchmark: what each augmentation (`data.augment`) gives on the handwriting benchmark, and
what it costs in training time.

    python bench/augment.py [--variants default,shift,...] [--seeds 0,1] [--count 500]
                            [--bench bench/handwriting.py] [--lock /tmp/cpu.lock]
                            [--results bench/augment.json] [--table]

Each variant is `cnn train --quiet --seed N` with the default config and one augmentation set
(`--set data.augment.KEY=VALUE`), all of them together, or a shipped recipe (handwriting), run
as a whole process in a fresh folder: its wall time is measured around the process, and its
MNIST test accuracy and fit time are read from its run.json. Its model is then read by the
handwriting benchmark (bench/handwriting.py: MNIST test digits made into pictures, read as
`cnn predict --image` reads them), whose per-style accuracy is kept. With --lock, each
training and each benchmark process runs holding `flock` on LOCK (one at a time on a shared
machine). Results are added to --results (JSON) as they come, so an interrupted run goes on
where it stopped; --table prints the Markdown tables from that file without running anything.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import fcntl
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run import CNN, ROOT, cpu_name, machine_class, peak_mb_of

# name: (shipped config, --set values). One augmentation at a time, then all of them together;
# handwriting is the shipped recipe, configs/handwriting.yaml, as it is.
VARIANTS: dict[str, tuple[str, list[str]]] = {
    "default": ("default", []),
    "shift": ("default", ["data.augment.shift=2"]),
    "rotation": ("default", ["data.augment.rotation=10"]),
    "zoom": ("default", ["data.augment.zoom=0.1"]),
    "thickness": ("default", ["data.augment.thickness=0.5"]),
    "elastic": ("default", ["data.augment.elastic_alpha=34", "data.augment.elastic_sigma=4"]),
    "all": (
        "default",
        [
            "data.augment.shift=2",
            "data.augment.rotation=10",
            "data.augment.zoom=0.1",
            "data.augment.thickness=0.5",
            "data.augment.elastic_alpha=34",
            "data.augment.elastic_sigma=4",
        ],
    ),
    "handwriting": ("handwriting", []),
}
DEFAULT_BENCH = ROOT / "bench" / "handwriting.py"


@contextlib.contextmanager
def locked(path: str | None):
    """Hold `flock` on `path` (as flock(1) does) for the block: timings start once it is held."""
    if not path:
        yield
        return
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def train(variant: str, seed: int, keep: Path, lock: str | None) -> dict:
    """One `cnn train` process: wall time, test accuracy, fit time, and where its model is."""
    config, sets = VARIANTS[variant]
    model = keep / f"{variant}-s{seed}.h5"
    command = [
        "train",
        "--quiet",
        "--config",
        config,
        "--seed",
        str(seed),
        "--model-path",
        str(model.resolve()),
        "--overwrite",
        *[a for s in sets for a in ("--set", s)],
    ]
    folder = Path(tempfile.mkdtemp(prefix=f"cnn-augment-{variant}-"))
    with locked(lock):
        result = peak_mb_of([*CNN, *command], folder)
    if result["code"] != 0:
        raise SystemExit(
            f"{variant} seed {seed} failed ({result['code']}):\n{result['err'][-2000:]}"
        )
    record = json.loads(next(folder.glob("logs/fit/*/run.json")).read_text())
    return {
        "command": "cnn "
        + " ".join(c if c != str(model.resolve()) else str(model) for c in command),
        "wall_s": round(result["wall"], 2),
        "fit_s": record["timings_s"].get("fit"),
        "test_accuracy": record["metrics"]["test_accuracy"],
        "augment": record["config"]["data"]["augment"],
        "model": str(model),
    }


def benchmark(
    model: str, bench: Path, count: int, lock: str | None, label: str | None = None
) -> dict:
    """The handwriting benchmark's JSON for `model`, run from its own worktree; `label` names
    the benchmark's version where it cannot (an exported copy, not a git checkout)."""
    command = [
        sys.executable,
        str(bench),
        "--model",
        str(Path(model).resolve()),
        "--json",
        "--count",
        str(count),
        "--numbers",
        "0",
    ]
    with locked(lock):
        done = subprocess.run(command, cwd=bench.parent.parent, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"benchmark of {model} failed:\n{done.stderr[-2000:]}")
    out = json.loads(done.stdout)
    return {
        "library": label or out.get("library"),
        "count": out["count"],
        "seed": out["seed"],
        "styles": {
            s: {
                "accuracy": r["accuracy"],
                "direct": r.get("direct_accuracy"),
                "refused": r.get("refused"),
            }
            for s, r in out["styles"].items()
        },
    }


def table(results: dict) -> str:
    runs = results["runs"]
    variants = [v for v in VARIANTS if any(r["variant"] == v for r in runs)]
    styles = next((list(r["bench"]["styles"]) for r in runs if "bench" in r), [])
    libraries = sorted({r["bench"]["library"] for r in runs if "bench" in r} - {None})

    def rows_of(v):
        return [r for r in runs if r["variant"] == v]

    def mean(values):
        return statistics.mean(values) if values else float("nan")

    def style_accuracy(v, s):
        return mean([r["bench"]["styles"][s]["accuracy"] for r in rows_of(v) if "bench" in r])

    base_wall = mean([r["wall_s"] for r in rows_of("default")])
    lines = [
        f"Made by `python bench/augment.py --seeds {results.get('seeds', '0')} --count "
        f"{results.get('count')} --lock /tmp/cpu.lock` (last run {results.get('date')}) on "
        f"{results['machine']['cpu']}, class **{results['machine']['class']}**, "
        f"{results['machine']['cores']} cores; the benchmark at commit "
        f"{', '.join(libraries) or '?'} of its worktree.",
        "",
        "| variant | `--set` (data.augment.*) | seeds | benchmark mean | worst style | "
        "MNIST test accuracy | train wall (s) | fit (s) | cost |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for v in variants:
        rows = rows_of(v)
        accs = {s: style_accuracy(v, s) for s in styles}
        worst = min(accs, key=accs.get) if accs else None
        wall = mean([r["wall_s"] for r in rows])
        sets = ", ".join(s.removeprefix("data.augment.") for s in VARIANTS[v][1]) or (
            "(none)" if VARIANTS[v][0] == "default" else f"--config {VARIANTS[v][0]}"
        )
        lines.append(
            f"| {v} | {sets} | {','.join(str(r['seed']) for r in rows)} | "
            f"{mean(list(accs.values())):.1%} | "
            + (f"{worst} {accs[worst]:.1%}" if worst else "-")
            + f" | {mean([r['test_accuracy'] for r in rows]):.4f} | {wall:.1f} | "
            f"{mean([r['fit_s'] for r in rows]):.1f} | {wall / base_wall - 1:+.0%} |"
        )
    lines += [
        "",
        "Per style (read through `cnn predict --image`'s path, mean over the seeds):",
        "",
        "| style | " + " | ".join(variants) + " |",
        "| --- | " + " | ".join("---" for _ in variants) + " |",
    ]
    for s in styles:
        lines.append(
            f"| {s} | " + " | ".join(f"{style_accuracy(v, s):.1%}" for v in variants) + " |"
        )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--variants",
        default=",".join(VARIANTS),
        help=f"comma-separated (default all): {','.join(VARIANTS)}",
    )
    parser.add_argument("--seeds", default="0", help="comma-separated seeds (default 0)")
    parser.add_argument("--count", type=int, default=500, help="digits per benchmark style")
    parser.add_argument(
        "--bench",
        type=Path,
        default=DEFAULT_BENCH,
        help="the handwriting benchmark (default this repository's; run from its repository's root)",
    )
    parser.add_argument("--lock", help="run each process holding `flock` on LOCK")
    parser.add_argument(
        "--bench-label",
        help="the benchmark's version, where --bench is not in "
        "a git checkout (e.g. the commit it was exported from)",
    )
    parser.add_argument("--results", type=Path, default=ROOT / "bench" / "augment.json")
    parser.add_argument(
        "--keep",
        type=Path,
        default=ROOT / "models" / "augment",
        help="where the trained models go (never commit them)",
    )
    parser.add_argument("--table", action="store_true", help="only print the tables")
    parser.add_argument("--force", action="store_true", help="redo runs already in --results")
    parser.add_argument(
        "--rebench",
        action="store_true",
        help="only run the benchmark again on the kept models (a new --bench)",
    )
    args = parser.parse_args()

    results = json.loads(args.results.read_text()) if args.results.exists() else {"runs": []}
    if not args.table:
        os.environ.setdefault("CNN_MNIST_DATA", str(ROOT.parent / "shared" / "data" / "mnist"))
        if not args.bench.is_file():
            parser.error(f"{args.bench}: no handwriting benchmark there; give --bench PATH")
        args.keep.mkdir(parents=True, exist_ok=True)
        variants = [v.strip() for v in args.variants.split(",") if v.strip()]
        unknown = [v for v in variants if v not in VARIANTS]
        if unknown:
            parser.error(f"unknown variant(s) {', '.join(unknown)}; known: {', '.join(VARIANTS)}")
        results.update(
            count=args.count,
            date=datetime.date.today().isoformat(),
            machine={
                "cpu": cpu_name(),
                "class": machine_class(),
                "cores": os.cpu_count(),
                "python": platform.python_version(),
            },
        )
        seeds = sorted(
            {
                *(int(s) for s in args.seeds.split(",")),
                *(int(s) for s in str(results.get("seeds", "")).split(",") if s),
            }
        )
        results["seeds"] = ",".join(map(str, seeds))
        for seed in (int(s) for s in args.seeds.split(",")):
            for variant in variants:
                done = [r for r in results["runs"] if (r["variant"], r["seed"]) == (variant, seed)]
                if done and args.rebench:
                    done[0]["bench"] = benchmark(
                        done[0]["model"], args.bench, args.count, args.lock, args.bench_label
                    )
                    args.results.write_text(json.dumps(results, indent=1))
                    continue
                if done and not args.force:
                    continue
                run = {
                    "variant": variant,
                    "seed": seed,
                    **train(variant, seed, args.keep, args.lock),
                }
                run["bench"] = benchmark(
                    run["model"], args.bench, args.count, args.lock, args.bench_label
                )
                results["runs"] = [r for r in results["runs"] if r not in done] + [run]
                args.results.write_text(json.dumps(results, indent=1))
                mean = statistics.mean(s["accuracy"] for s in run["bench"]["styles"].values())
                print(
                    f"  {variant} seed {seed}: wall {run['wall_s']:.1f} s, test accuracy "
                    f"{run['test_accuracy']:.4f}, benchmark mean {mean:.1%}",
                    flush=True,
                )
    print(table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
