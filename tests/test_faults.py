"""The fault suite: every command that writes, run (a) with the disk full at its first write and
at a later one, (b) stopped by SIGTERM at a few points, (c) with its outputs unwritable.

Each must end with a non-zero exit and one or two lines that name the cause and what to do, no
traceback; every file that was there before byte-identical; no temporary file left; every
run.json valid JSON, not left `running`. As SQLite tests its I/O errors, the faults are real: a
small tmpfs filled to the byte, a tmpfs mounted read-only (root can mount one; where that is
refused the tests skip and say why: CI runs as root), real signals to real processes.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from PIL import Image, ImageDraw

from cnn_mnist.cli import cli
from tests.conftest import TINY_LAYERS, synthetic_digits, write_idx_folder

REPO = Path(__file__).resolve().parent.parent

# What a temporary file of this tool looks like (atomic writes, exports, the run record's
# reserve, the write test): a hidden name, or .tmp / .old / .reserve in it.
TEMPORARY = re.compile(r"(^\.)|(\.tmp)|(\.old$)|(\.reserve$)|(\.float\.onnx$)")
STATUSES = {"completed", "interrupted", "failed"}


@contextlib.contextmanager
def chdir(folder: Path):
    """contextlib.chdir, which Python 3.10 lacks."""
    before = os.getcwd()
    os.chdir(folder)
    try:
        yield
    finally:
        os.chdir(before)


# --- the world the commands run in -----------------------------------------------------------


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    """A trained tiny model (and its run), its data, a picture of a digit and of a number, and
    configs for train and sweep: all on the ordinary disk. The commands write elsewhere."""
    from cnn_mnist.stages.data import Mnist

    root = tmp_path_factory.mktemp("world")
    x, y = synthetic_digits(512, seed=1)
    xt, yt = synthetic_digits(128, seed=2)
    write_idx_folder(root / "data", Mnist(x, y, xt, yt, "synthetic"))
    config = {
        "data": {"path": str(root / "data")},
        "model": {"layers": TINY_LAYERS},
        "training": {"epochs": 1, "batch_size": 32, "seed": 7},
        "tensorboard": {"log_dir": str(root / "logs")},
        "output": {"model_path": str(root / "models" / "tiny.h5")},
    }
    (root / "tiny.yaml").write_text(yaml.safe_dump(config))
    with chdir(root):
        trained = CliRunner().invoke(cli, ["train", "-q", "--config", "tiny.yaml"])
    assert trained.exit_code == 0, trained.output
    _pictures(root)
    # The model without the .tflite `cnn train` keeps beside it: predict then loads TensorFlow,
    # which takes long enough to be stopped while it starts.
    (root / "keras").mkdir()
    shutil.copy(root / "models" / "tiny.h5", root / "keras" / "tiny.h5")
    return root


def _pictures(root: Path) -> None:
    """A 1 on paper, and '11' side by side, drawn here."""
    for name, width, tops in (("one.png", 200, [80]), ("eleven.png", 400, [80, 280])):
        picture = Image.new("L", (width, 200), 255)
        draw = ImageDraw.Draw(picture)
        for x in tops:
            draw.line([(x + 20, 30), (x + 20, 170)], fill=0, width=16)
        picture.save(root / name)


def _config(world: Path, out: Path, name: str, epochs: int, **more) -> Path:
    """A copy of the world's config writing its run and model under `out`."""
    config = yaml.safe_load((world / "tiny.yaml").read_text())
    config["training"]["epochs"] = epochs
    config["tensorboard"]["log_dir"] = str(out / "logs")
    config["output"]["model_path"] = str(out / "models" / "tiny.h5")
    config.update(more)
    path = world / f"{name}-{abs(hash(str(out))) % 10**8}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def command(name: str, world: Path, out: Path) -> list[str]:
    """`cnn ...` for a command that writes, its outputs under `out`."""
    model, data = str(world / "models" / "tiny.h5"), str(world / "data")
    if name.startswith("predict"):
        model = str(world / "keras" / "tiny.h5")
    on_model = ["--model", model, "--data", data]
    if name == "train":
        return ["train", "-q", "--config", str(_config(world, out, "train", 3))]
    if name == "sweep":
        sweep = {"trials": 1, "parameters": {"compile.learning_rate": {"values": [0.001, 0.002]}}}
        return ["sweep", "-q", "--config", str(_config(world, out, "sweep", 2, sweep=sweep))]
    if name.startswith("export-"):
        fmt = name.removeprefix("export-")
        target = out / {"saved_model": "sm", "litert": "m.tflite", "onnx": "m.onnx"}[fmt]
        return ["export", "--format", fmt, "--out", str(target), *on_model]
    if name == "evaluate":
        return ["evaluate", "-q", *on_model, "--out", str(out / "ev")]
    if name == "inspect":
        return ["inspect", "-q", *on_model, "--index", "3", "--out", str(out / "ins")]
    if name == "predict-save-image":
        return ["predict", "-q", *on_model, "--index", "3", "--save-image", str(out / "p.png")]
    if name == "predict-save-preprocessed":
        picture = str(world / "one.png")
        return ["predict", "-q", "--model", model, "--image", picture, "--save-preprocessed",
                str(out / "seen")]  # fmt: skip
    if name == "predict-number":
        picture = str(world / "eleven.png")
        return ["predict", "-q", "--model", model, "--image", picture, "--number",
                "--save-preprocessed", str(out / "digits")]  # fmt: skip
    raise AssertionError(name)


EXPORTS = ["export-saved_model", "export-litert", "export-onnx"]
WRITERS = [
    "train",
    *EXPORTS,
    "evaluate",
    "inspect",
    "predict-save-image",
    "predict-save-preprocessed",
    "predict-number",
    "sweep",
]


# --- real faults: a small disk, a read-only one ----------------------------------------------


@contextlib.contextmanager
def tmpfs(where: Path, size: str = "8m", read_only: bool = False):
    """A tmpfs at `where` for the block (root only: skips, saying why, elsewhere)."""
    where.mkdir(parents=True, exist_ok=True)
    options = f"size={size}" + (",ro" if read_only else "")
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(where)],
        capture_output=True,
        text=True,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({mounted.stderr.strip()}); CI runs as root")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], capture_output=True)


def fill(disk: Path, leave: int = 0) -> None:
    """The disk filled until `leave` bytes are free (0: until a write fails)."""
    filler = disk / "filler"
    with filler.open("ab") as fh:
        free = shutil.disk_usage(disk).free - leave
        with contextlib.suppress(OSError):
            while free > 0:
                chunk = min(free, 1 << 20)
                fh.write(b"\0" * chunk)
                fh.flush()
                free -= chunk
    if leave == 0:  # to the last byte: tmpfs counts pages, so write until it refuses
        for _ in range(64):
            try:
                with (disk / f"filler{_}").open("wb") as fh:
                    fh.write(b"\0" * 4096)
            except OSError:
                break


# --- what every fault must leave -------------------------------------------------------------


def snapshot(*roots: Path) -> dict[Path, str]:
    """Every file under `roots` (but the filler), by its SHA-256."""
    return {
        p: hashlib.sha256(p.read_bytes()).hexdigest()
        for root in roots
        for p in sorted(root.rglob("*"))
        if p.is_file() and not p.name.startswith("filler")
    }


def names(*roots: Path) -> set[Path]:
    return {p for root in roots for p in root.rglob("*")}


def assert_clean(code: int, output: str, before: dict, before_names: set, *roots: Path) -> None:
    """Non-zero, one or two lines and no traceback; nothing that was there changed; no
    temporary file; every run.json valid and ended."""
    lines = [line for line in output.strip().splitlines() if line.strip()]
    assert code != 0, output
    assert "Traceback" not in output, output
    assert 1 <= len(lines) <= 2, output
    assert lines[0].startswith("error: "), output
    assert {p: h for p, h in snapshot(*roots).items() if p in before} == before
    left = [p for p in names(*roots) - before_names if TEMPORARY.search(p.name)]
    assert not left, left
    for record in (p for root in roots for p in root.rglob("run.json")):
        data = json.loads(record.read_text())  # valid JSON, or this fails
        if record not in before:
            assert data["status"] in STATUSES, (record, data["status"])


def run_in_process(args: list[str], cwd: Path) -> tuple[int, str]:
    """`cnn ARGS` through click's runner (stdout and stderr together)."""
    with chdir(cwd):
        result = CliRunner().invoke(cli, args)
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, result.output


def run_as_process(args: list[str], cwd: Path) -> tuple[int, str]:
    """`cnn ARGS` as a user runs it (its stderr: stdout holds results, not messages)."""
    done = subprocess.run(
        [sys.executable, "-m", "cnn_mnist", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    return done.returncode, done.stderr


def run(name: str, args: list[str], cwd: Path) -> tuple[int, str]:
    """Each fault as a user meets it: `cnn` as its own process. (In pytest's process, HDF5's
    state after a failed write crashed a later test once, and TensorFlow's log level is
    whatever earlier tests left.)"""
    return run_as_process(args, cwd)


# --- (a) a full disk -------------------------------------------------------------------------


# How much the command may write before the disk is full, for "a later write": about half of
# what it writes on this tiny model (measured: run it on an empty disk, `du` its outputs).
LATER = {
    "train": 600_000,
    "export-saved_model": 60_000,
    "export-litert": 30_000,
    "export-onnx": 30_000,
    "evaluate": 40_000,
    "inspect": 40_000,
    "predict-save-image": 4_000,
    "predict-save-preprocessed": 0,  # one small PNG: only "at the first write"
    "predict-number": 0,
    "sweep": 400_000,
}


FULL_DISKS = [
    *[(name, "first") for name in WRITERS],
    *[(name, "later") for name in WRITERS if LATER[name]],  # not: one small file, one write
]


@pytest.mark.slow
@pytest.mark.parametrize("name, when", FULL_DISKS)
def test_a_full_disk(world, tmp_path, name, when):
    disk = tmp_path / "disk"
    with tmpfs(disk):
        args = command(name, world, disk)
        fill(disk, 0 if when == "first" else LATER[name])
        before, before_names = snapshot(world, disk), names(world, disk)
        code, output = run(name, args, tmp_path)
        assert_clean(code, output, before, before_names, world, disk)
        assert "no space left on the device" in output, output
        assert "make room" in output, output


def test_every_writer_fits_its_later_fault(world, tmp_path):
    """The `LATER` sizes leave each command part of what it writes (so "later" is a later
    write, not the first): measured against the real outputs, on the ordinary disk."""
    for name in ("export-litert", "evaluate", "inspect", "predict-save-image"):
        out = tmp_path / name
        code, output = run_in_process(command(name, world, out), tmp_path)
        assert code == 0, output
        written = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
        assert 0 < LATER[name] < written, (name, written)


# --- (c) outputs that cannot be written ------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("name", [*WRITERS, "runs-rm"])
def test_outputs_on_a_read_only_file_system(world, tmp_path, name):
    disk = tmp_path / "ro"
    with tmpfs(disk, read_only=True):
        if name == "runs-rm":  # a run folder on a file system that cannot change
            subprocess.run(["mount", "-o", "remount,rw", str(disk)], check=True)
            shutil.copytree(
                next((world / "logs").iterdir()), disk / "logs" / "20260101-000000-aaaa"
            )
            subprocess.run(["mount", "-o", "remount,ro", str(disk)], check=True)
            args = ["runs", "--logdir", str(disk / "logs"), "rm", "--yes", "--force",
                    "20260101-000000-aaaa"]  # fmt: skip
        else:
            args = command(name, world, disk)
        before, before_names = snapshot(world, disk), names(world, disk)
        code, output = run(name, args, tmp_path)
        assert_clean(code, output, before, before_names, world, disk)
        assert re.search(r"read-only|not writable|permission", output, re.I), output


# --- (b) SIGTERM -----------------------------------------------------------------------------


def start(args: list[str], cwd: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "cnn_mnist", *args],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )


def wait_for(process: subprocess.Popen, seen, timeout: float = 120) -> bool:
    """Wait until `seen()` (True), or the process ends first (False)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if seen():
            return True
        if process.poll() is not None:
            return False
        time.sleep(0.01)
    raise AssertionError("neither the moment nor the end came")


def hidden(folder: Path):
    """The moment a temporary (hidden) file or folder appears under `folder`."""
    return lambda: folder.exists() and any(p.name.startswith(".") for p in folder.rglob("*"))


# Where a command is stopped: while TensorFlow loads, and while its temporary output exists (an
# export being written and checked) or between epochs (training, a sweep's trial). Commands
# that write for milliseconds are stopped while they start.
SIGTERMS = [
    *[(name, "starting") for name in WRITERS],
    *[(name, "writing") for name in ("train", "sweep", *EXPORTS)],
]


@pytest.mark.slow
@pytest.mark.parametrize("name, moment", SIGTERMS)
def test_sigterm(world, tmp_path, name, moment):
    out = tmp_path / "out"
    out.mkdir()
    args = command(name, world, out)
    before, before_names = snapshot(world, out), names(world, out)
    process = start(args, tmp_path)
    if moment == "starting":
        time.sleep(1.0)
        reached = process.poll() is None
    elif name in ("train", "sweep"):
        reached = wait_for(process, lambda: any(out.rglob("epochs.jsonl")))
    else:
        reached = wait_for(process, hidden(out))
    assert reached, process.communicate()
    process.send_signal(signal.SIGTERM)
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr
    assert_clean(process.returncode, stderr, before, before_names, world, out)
    assert "interrupted" in stderr, stderr


# --- the run record on a full disk, and --resume once there is room --------------------------


@pytest.mark.slow
def test_a_full_disk_mid_run_leaves_a_failed_record_that_resumes(world, tmp_path):
    """The disk fills to the last byte after the first epoch: run.json stays valid, says
    `failed`, and `cnn train --resume RUN` completes the run once there is room."""
    disk = tmp_path / "disk"
    with tmpfs(disk, size="16m"):
        config = _config(world, disk, "mid", 4)
        process = start(["train", "-q", "--config", str(config)], tmp_path)
        assert wait_for(process, lambda: any(disk.rglob("epochs.jsonl")))
        process.send_signal(signal.SIGSTOP)
        fill(disk, 0)
        process.send_signal(signal.SIGCONT)
        _, stderr = process.communicate(timeout=120)
        assert process.returncode == 1, stderr
        assert "no space left" in stderr and "Traceback" not in stderr, stderr
        (record,) = disk.rglob("run.json")
        data = json.loads(record.read_text())
        assert data["status"] == "failed" and "no space left" in data["error"].lower(), data
        assert f"cnn train --resume {data['run_id']}" in stderr, stderr
        assert not list(disk.rglob(".run.json.reserve"))
        for filler in disk.glob("filler*"):
            filler.unlink()
        resumed = start(["train", "-q", "--config", str(config), "--resume", data["run_id"]],
                        tmp_path)  # fmt: skip
        _, stderr = resumed.communicate(timeout=300)
        assert resumed.returncode == 0, stderr
        data = json.loads(record.read_text())
        assert data["status"] == "completed" and data["metrics"]["epochs_completed"] == 4


def test_the_reserve_makes_room_for_the_last_record(tmp_path):
    """Without root: a disk that is full for every new file but the room the reserve frees
    (the writer's OSError injected), so `stop` writes the failed record there."""
    from cnn_mnist.training.record import RunRecord

    record = RunRecord(tmp_path, "r1", config={"x": list(range(500))})
    record.write()
    reserve = tmp_path / RunRecord.RESERVE
    assert reserve.stat().st_size >= 2 * (tmp_path / "run.json").stat().st_size
    real_write = record.write
    calls = []

    def full_until_room(*args):
        calls.append(reserve.exists())
        if reserve.exists():
            import errno

            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write()

    record.write = full_until_room  # type: ignore[method-assign]
    assert record.stop("failed", error="no space left") == tmp_path / "run.json"
    assert calls == [True, False]
    assert json.loads((tmp_path / "run.json").read_text())["status"] == "failed"
    assert not reserve.exists()


@pytest.mark.slow
def test_an_export_whose_run_record_is_read_only_is_kept_with_a_warning(world, tmp_path):
    """The export is written and checked; only its entry in run.json cannot be: one warning,
    exit 0, the record as it was (it was a PermissionError traceback)."""
    logs = tmp_path / "logs"
    run = next((world / "logs").iterdir())
    with tmpfs(logs):
        shutil.copytree(run, logs / "fit" / run.name)
        subprocess.run(["mount", "-o", "remount,ro", str(logs)], check=True)
        before = snapshot(logs)
        out = tmp_path / "m.onnx"
        model, data = str(world / "models" / "tiny.h5"), str(world / "data")
        code, output = run_in_process(
            ["export", "-q", "--format", "onnx", "--model", model, "--data", data, "--out",
             str(out)], tmp_path)  # fmt: skip
        assert code == 0 and out.is_file(), output
        assert "warning: could not write the export's entry" in output, output
        assert "not listed in its run's record" in output and "Traceback" not in output
        assert snapshot(logs) == before


def test_evaluate_of_an_unreadable_model_makes_no_out_folder(world, tmp_path):
    broken = tmp_path / "broken.h5"
    broken.write_bytes(b"not a model")
    out = tmp_path / "results" / "ev"
    code, output = run_in_process(
        ["evaluate", "--model", str(broken), "--data", str(world / "data"), "--out", str(out)],
        tmp_path,
    )
    assert code != 0 and "not a readable Keras model" in output, output
    assert not (tmp_path / "results").exists()
