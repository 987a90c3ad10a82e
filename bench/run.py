"""Benchmark: `cnn` against the lecture's script, as whole processes, in one run.

    python bench/run.py [--reps 3] [--seeds 5] [--out FILE]

Repetitions alternate (reference, ours, reference, ours, ...) so that machine noise falls on
both alike. Each job is a fresh process in a fresh folder; wall time is measured around it and
peak memory is its maximum resident set size. MNIST comes from $CNN_MNIST_DATA (or
../shared/data/mnist). Prints a Markdown table and writes it, with the machine and library
versions, to --out.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable
CNN = [PY, "-m", "cnn_mnist"]


def peak_mb_of(argv: list[str], cwd: Path) -> dict:
    """Run one process: wall seconds, its own peak resident memory (MB, from wait4), output."""
    start = time.perf_counter()
    process = subprocess.Popen(
        argv, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    out_chunks = process.stdout.read(), process.stderr.read()
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - start
    process.returncode = os.waitstatus_to_exitcode(status)
    return {
        "wall": wall,
        "peak_mb": usage.ru_maxrss / 1024,
        "code": process.returncode,
        "out": out_chunks[0],
        "err": out_chunks[1],
    }


def accuracy_of_run(folder: Path) -> float | None:
    records = list(folder.glob("logs/fit/*/run.json"))
    return json.loads(records[0].read_text())["metrics"]["test_accuracy"] if records else None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=3, help="repetitions of each training job")
    parser.add_argument("--seeds", type=int, default=5, help="seeds for the speed-run config")
    parser.add_argument(
        "--out",
        help="also write the report to this file (bench/RESULTS.md "
        "keeps one section per machine class: paste it there)",
    )
    parser.add_argument(
        "--emulate-avx2",
        action="store_true",
        help="cap oneDNN at AVX2 (ONEDNN_MAX_CPU_ISA=AVX2) for every job, which "
        "also makes `auto` pick float32, as on an AVX2-only CPU: an emulation "
        "of that class on a newer CPU, reported as such",
    )
    args = parser.parse_args()
    if args.emulate_avx2:
        os.environ["ONEDNN_MAX_CPU_ISA"] = "AVX2"

    data = os.environ.get("CNN_MNIST_DATA") or str(ROOT.parent / "shared" / "data" / "mnist")
    os.environ["CNN_MNIST_DATA"] = data
    scratch = Path(tempfile.mkdtemp(prefix="cnn-bench-"))
    results: dict[str, list[dict]] = {}

    def record(name: str, argv: list[str], accuracy=None) -> dict:
        folder = Path(tempfile.mkdtemp(dir=scratch))
        result = peak_mb_of(argv, folder)
        if result["code"] != 0:
            print(f"{name} failed ({result['code']}):\n{result['err'][-2000:]}", file=sys.stderr)
        result["accuracy"] = accuracy(folder, result) if accuracy else None
        result["folder"] = folder
        results.setdefault(name, []).append(result)
        print(
            f"  {name:<28} {result['wall']:7.2f} s {result['peak_mb']:7.0f} MB  "
            f"acc {result['accuracy'] if result['accuracy'] is not None else '-'}",
            flush=True,
        )
        return result

    reference = lambda folder, r: json.loads(r["out"].strip().splitlines()[-1])["test_accuracy"]
    ours = lambda folder, r: accuracy_of_run(folder)

    print(
        f"Benchmark on {cpu_name()} ({machine_class()}): {args.reps} repetitions, "
        f"{args.seeds} speed-run seeds; data {data}"
    )
    for rep in range(args.reps):
        record("lecture script (reference)", [PY, str(ROOT / "bench" / "reference.py")], reference)
        record("cnn train (default)", [*CNN, "train", "--quiet", "--seed", str(rep)], ours)
    for seed in range(args.seeds):
        record(
            "cnn train (speedrun)",
            [*CNN, "train", "--quiet", "--config", "speedrun", "--seed", str(seed)],
            ours,
        )
    model_dir = results["cnn train (default)"][0]["folder"]
    for _ in range(5):
        folder = Path(tempfile.mkdtemp(dir=scratch))
        (folder / "models").symlink_to(model_dir / "models")
        result = peak_mb_of([*CNN, "predict", "--index", "10", "--json"], folder)
        result["accuracy"] = None
        result["prediction"] = (
            json.loads(result["out"])[0]["predicted"] if result["code"] == 0 else None
        )
        results.setdefault("cnn predict --index 10", []).append(result)
        results.setdefault("cnn --help", []).append(peak_mb_of([*CNN, "--help"], folder))
    for _ in range(3):
        folder = Path(tempfile.mkdtemp(dir=scratch))
        (folder / "models").symlink_to(model_dir / "models")
        result = peak_mb_of([*CNN, "inspect", "--index", "10", "--quiet"], folder)
        result["accuracy"] = None
        results.setdefault("cnn inspect --index 10", []).append(result)

    table = report(results, args)
    versions = library_versions()
    text = "\n".join(
        [
            "# Benchmark results",
            "",
            f"Made by `python bench/run.py --reps {args.reps} --seeds {args.seeds}"
            f"{' --emulate-avx2' if args.emulate_avx2 else ''}` on "
            f"{datetime.date.today().isoformat()}.",
            "",
            f"Machine: {cpu_name()}, class **{machine_class()}**, {os.cpu_count()} cores, "
            f"{platform.platform()}; {versions}.",
            "",
            table,
            "",
            stage_breakdown(results),
        ]
    )
    if args.out:
        Path(args.out).write_text(text + "\n")
    print("\n" + text)
    return 0


def report(results: dict[str, list[dict]], args) -> str:
    ref = results["lecture script (reference)"]
    ref_fastest = min(r["wall"] for r in ref)
    ref_median = statistics.median(r["wall"] for r in ref)
    lines = [
        "| job | runs | median wall (s) | fastest | slowest | peak memory (MB) | test accuracy "
        "| median / reference median | median / reference fastest |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, runs in results.items():
        walls = [r["wall"] for r in runs]
        accs = [r["accuracy"] for r in runs if r.get("accuracy") is not None]
        acc = (
            (f"{min(accs):.4f}-{max(accs):.4f}" if len(set(accs)) > 1 else f"{accs[0]:.4f}")
            if accs
            else ("predicted " + str(runs[0].get("prediction")) if "prediction" in runs[0] else "-")
        )
        median = statistics.median(walls)
        ratios = (
            f"{median / ref_median:.2f} | {median / ref_fastest:.2f}"
            if name.startswith(("lecture", "cnn train"))
            else "- | -"
        )
        lines.append(
            f"| {name} | {len(runs)} | {median:.2f} | {min(walls):.2f} | {max(walls):.2f} "
            f"| {max(r['peak_mb'] for r in runs):.0f} | {acc} | {ratios} |"
        )
    ours = results["cnn train (default)"]
    speed = results["cnn train (speedrun)"]
    ours_walls = [r["wall"] for r in ours]
    checks = [
        (
            "default: median <= 0.8 x reference's fastest",
            statistics.median(ours_walls) <= 0.8 * ref_fastest,
        ),
        ("default: slowest <= 1.15 x our fastest", max(ours_walls) <= 1.15 * min(ours_walls)),
        ("default: test accuracy >= 0.98", all((r["accuracy"] or 0) >= 0.98 for r in ours)),
        ("default: peak memory <= 1.2 GB", max(r["peak_mb"] for r in ours) <= 1200),
        ("speedrun: every seed >= 0.990", all((r["accuracy"] or 0) >= 0.990 for r in speed)),
        ("speedrun: median wall <= 20 s", statistics.median(r["wall"] for r in speed) <= 20),
        (
            "predict --index 10: median <= 1.0 s",
            statistics.median(r["wall"] for r in results["cnn predict --index 10"]) <= 1.0,
        ),
        (
            "--help: median <= 0.3 s",
            statistics.median(r["wall"] for r in results["cnn --help"]) <= 0.3,
        ),
        (
            "inspect --index 10: median <= 6 s",
            statistics.median(r["wall"] for r in results["cnn inspect --index 10"]) <= 6.0,
        ),
    ]
    lines += ["", "| target | met |", "| --- | --- |"]
    lines += [f"| {name} | {'yes' if ok else '**no**'} |" for name, ok in checks]
    return "\n".join(lines)


def stage_breakdown(results: dict[str, list[dict]]) -> str:
    """Where `cnn train`'s time goes, from the run records (timings_s)."""
    lines = [
        "Where the time goes in `cnn train` (seconds, median over runs, from run.json):",
        "",
        "| job | import | load data | build+compile | first step | other steps | validation "
        "| epoch end (histograms, backups) | evaluate | save + export | total in process |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name in ("cnn train (default)", "cnn train (speedrun)"):
        timings = []
        for r in results[name]:
            records = list(r["folder"].glob("logs/fit/*/run.json"))
            if records:
                timings.append(json.loads(records[0].read_text())["timings_s"])
        if not timings:
            continue
        med = lambda f: statistics.median(f(t) for t in timings)
        lines.append(
            f"| {name} | {med(lambda t: t['import']):.2f} | {med(lambda t: t['load_data']):.2f} | "
            f"{med(lambda t: t['build'] + t['compile']):.2f} | "
            f"{med(lambda t: t['fit_breakdown']['first_step']):.2f} | "
            f"{med(lambda t: t['fit_breakdown']['train_steps']):.2f} | "
            f"{med(lambda t: t['fit_breakdown']['validation']):.2f} | "
            f"{med(lambda t: t['fit_breakdown']['epoch_end']):.2f} | "
            f"{med(lambda t: t['evaluate']):.2f} | {med(lambda t: t['save']):.2f} | "
            f"{med(lambda t: t['total']):.2f} |"
        )
    settings = {}
    for name in ("cnn train (default)", "cnn train (speedrun)"):
        for r in results[name]:
            for path in r["folder"].glob("logs/fit/*/run.json"):
                settings[name] = json.loads(path.read_text()).get("accelerator")
    if settings:  # what the program chose for this hardware (on a GPU: XLA, steps, float16)
        lines += [
            "",
            "Settings `cnn train` chose for this machine (run.json `accelerator`): "
            + "; ".join(f"{name}: {value}" for name, value in settings.items()),
        ]
    return "\n".join(lines)


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def machine_class() -> str:
    """What decides this CPU's speed here: its bfloat16 and vector instructions. Figures from
    two classes are never one series."""
    try:
        flags = set(
            next(
                line
                for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("flags")
            )
            .split(":", 1)[1]
            .split()
        )
    except (OSError, StopIteration):
        return "unknown (no /proc/cpuinfo)"
    cap = os.environ.get("ONEDNN_MAX_CPU_ISA", "").upper()
    if cap == "AVX2" and "avx2" in flags:  # --emulate-avx2: oneDNN capped, and float32 chosen
        return "AVX2 only, emulated with ONEDNN_MAX_CPU_ISA=AVX2, float32"
    if "amx_bf16" in flags:
        return "AMX (amx_bf16)"
    if "avx512_bf16" in flags:
        return "AVX-512 BF16 (avx512_bf16, no AMX)"
    if "avx512f" in flags:
        return "AVX-512 without BF16 (avx512f)"
    return "AVX2 only (no AVX-512, no AMX)" if "avx2" in flags else "no AVX2"


def library_versions() -> str:
    code = (
        "import os; os.environ['TF_CPP_MIN_LOG_LEVEL']='3'\nimport sys, tensorflow as tf, "
        "keras, numpy\ngpus = [d.name for d in tf.config.list_physical_devices('GPU')]\n"
        "print(f'Python {sys.version.split()[0]}, TensorFlow {tf.__version__}, "
        'Keras {keras.__version__}, NumPy {numpy.__version__}; GPU: {gpus or "none"}\')'
    )
    out = subprocess.run([PY, "-c", code], capture_output=True, text=True).stdout.strip()
    return out or "versions unknown"


if __name__ == "__main__":
    sys.exit(main())
