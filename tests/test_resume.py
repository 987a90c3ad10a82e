"""Interrupting and resuming `cnn train` as a real process: SIGINT, SIGTERM and SIGKILL."""

import json
import signal
import socket
import subprocess
import sys
import time

import pytest
import yaml

from cnn_mnist.stages.data import IDX_FILES
from tests.conftest import sigint_as_in_a_terminal, synthetic_digits, write_idx

pytestmark = pytest.mark.slow  # every test here starts real training processes

EPOCHS = 3


@pytest.fixture
def slow_run(tmp_path):
    """A 3-epoch run of the lecture's model on 4,000 synthetic digits: a few seconds an epoch."""
    folder = tmp_path / "mnist"
    folder.mkdir()
    x_train, y_train = synthetic_digits(4000, seed=1)
    x_test, y_test = synthetic_digits(200, seed=2)
    for role, array in zip(IDX_FILES.values(), (x_train, y_train, x_test, y_test)):
        write_idx(folder / f"{role}.gz", array)
    config = {
        "data": {"path": str(folder)},
        "training": {"epochs": EPOCHS, "batch_size": 32, "seed": 5},
        "tensorboard": {"log_dir": str(tmp_path / "logs"), "update_freq": 20},
        "output": {"model_path": str(tmp_path / "models" / "m.h5")},
    }
    (tmp_path / "run.yaml").write_text(yaml.safe_dump(config))
    return tmp_path


def start(cwd, *args):
    return subprocess.Popen(
        [sys.executable, "-m", "cnn_mnist", "train", "--config", "run.yaml", *args],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=sigint_as_in_a_terminal,
    )


def wait_for_epochs(cwd, count, process, timeout=180):
    deadline = time.time() + timeout
    while time.time() < deadline:
        logs = list((cwd / "logs").glob("*/epochs.jsonl"))
        if logs and len(logs[0].read_text().splitlines()) >= count:
            return logs[0].parent
        assert process.poll() is None, process.communicate()
        time.sleep(0.1)
    raise AssertionError("training did not reach epoch %d" % count)


def epoch_steps(run_dir):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    accumulator = EventAccumulator(str(run_dir / "train"), size_guidance={"tensors": 0})
    accumulator.Reload()
    return sorted({event.step for event in accumulator.Tensors("epoch_loss")})


def finish_by_resuming(cwd, run_dir, *args, said=""):
    result = subprocess.run(
        [sys.executable, "-m", "cnn_mnist", "train", "--config", "run.yaml", "--resume", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"Resuming run {run_dir.name} ({said}" in result.stderr
    record = json.loads((run_dir / "run.json").read_text())
    assert record["status"] == "completed" and record["run_id"] == run_dir.name
    assert record["metrics"]["epochs_completed"] == EPOCHS
    assert len(record["metrics"]["history"]["loss"]) == EPOCHS
    assert len(record["metrics"]["history"]["val_accuracy"]) == EPOCHS
    assert epoch_steps(run_dir) == list(range(EPOCHS))  # TensorBoard: every epoch, no jump
    assert not (run_dir / "backup").exists()
    assert (cwd / "models" / "m.h5").is_file()
    assert [p.name for p in (cwd / "logs").iterdir()] == [run_dir.name]  # the same run id
    return record


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_interrupt_then_resume(slow_run, sig):
    process = start(slow_run)
    run_dir = wait_for_epochs(slow_run, 1, process)
    time.sleep(0.5)  # into the second epoch
    process.send_signal(sig)
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr[-3000:]
    assert "Traceback" not in stderr + stdout
    assert f"cnn train --resume {run_dir.name}" in stderr
    record = json.loads((run_dir / "run.json").read_text())
    assert record["status"] == "interrupted" and record["epochs_completed"] >= 1
    assert not (slow_run / "models" / "m.h5").exists()  # nothing half-done was published
    finish_by_resuming(slow_run, run_dir)


def test_kill_then_resume_loses_at_most_one_epoch(slow_run):
    process = start(slow_run)
    run_dir = wait_for_epochs(slow_run, 1, process)
    time.sleep(0.5)
    process.kill()
    process.communicate(timeout=60)
    finished = len((run_dir / "epochs.jsonl").read_text().splitlines())
    killed = json.loads((run_dir / "run.json").read_text())
    assert killed["status"] == "running" and killed["pid"] == process.pid
    assert killed["host"] == socket.gethostname()
    # Its process is gone from this host: `cnn runs` shows it as interrupted.
    listed = subprocess.run(
        [sys.executable, "-m", "cnn_mnist", "runs", "--json", "--logdir", "logs"],
        cwd=slow_run,
        capture_output=True,
        text=True,
        timeout=120,
    )
    (row,) = json.loads(listed.stdout)
    assert row["status"] == "interrupted" and f"({process.pid} on " in row["problem"]
    record = finish_by_resuming(
        slow_run, run_dir, run_dir.name, said=f"interrupted: its process ({process.pid} on"
    )
    assert record["resumed_from_epoch"] == finished >= 1


def test_resume_with_nothing_to_resume(slow_run):
    result = subprocess.run(
        [sys.executable, "-m", "cnn_mnist", "train", "--config", "run.yaml", "--resume"],
        cwd=slow_run,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2 and "no unfinished run" in result.stderr
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "cnn_mnist",
            "train",
            "--config",
            "run.yaml",
            "--resume",
            "--epochs",
            "5",
        ],
        cwd=slow_run,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2 and "drop --epochs" in result.stderr


# Dropout and a learning-rate schedule: the state that a resumed run must carry on with.
DROPOUT_LAYERS = [
    {"type": "Conv2D", "filters": 8, "kernel_size": 3, "activation": "relu"},
    {"type": "MaxPooling2D", "pool_size": 2},
    {"type": "Dropout", "rate": 0.25},
    {"type": "Flatten"},
    {"type": "Dense", "units": 32, "activation": "relu"},
    {"type": "Dropout", "rate": 0.5},
    {"type": "Dense", "units": 10, "activation": "softmax"},
]
TRAIN, BATCH = 6400, 32  # epochs long enough that the stop always lands inside epoch 2
STEPS = TRAIN // BATCH  # 200 per epoch


def same_run_folder(tmp_path, name):
    """Synthetic digits and a shuffled, seeded run with dropout and a one-cycle schedule,
    logging batch scalars every step (so the test can see a run get into its second epoch)."""
    cwd = tmp_path / name
    folder = cwd / "mnist"
    folder.mkdir(parents=True)
    x_train, y_train = synthetic_digits(TRAIN, seed=1)
    x_test, y_test = synthetic_digits(200, seed=2)
    for role, array in zip(IDX_FILES.values(), (x_train, y_train, x_test, y_test)):
        write_idx(folder / f"{role}.gz", array)
    config = {
        "data": {"path": str(folder)},
        "model": {"layers": DROPOUT_LAYERS},
        "compile": {"learning_rate": 0.003, "schedule": {"type": "one_cycle"}},
        "training": {"epochs": EPOCHS, "batch_size": BATCH, "seed": 11, "shuffle": True},
        "tensorboard": {
            "log_dir": str(cwd / "logs"),
            "update_freq": 1,
            "histogram_freq": 0,
            "write_graph": False,
        },
        "output": {"model_path": str(cwd / "models" / "m.h5")},
    }
    (cwd / "run.yaml").write_text(yaml.safe_dump(config))
    return cwd


def batches_logged(run_dir) -> int:
    """The optimizer step of the last per-batch scalar written so far (-1: none yet)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    accumulator = EventAccumulator(str(run_dir / "train"), size_guidance={"tensors": 0})
    accumulator.Reload()
    if "batch_loss" not in accumulator.Tags().get("tensors", []):
        return -1
    return max(event.step for event in accumulator.Tensors("batch_loss"))


def epoch_records(run_dir) -> list[dict]:
    from cnn_mnist.stages.fit import read_epochs

    return read_epochs(run_dir / "epochs.jsonl")


def test_resumed_run_repeats_the_uninterrupted_run(tmp_path):
    """Stopped by SIGTERM a few batches into epoch 2 and resumed, a seeded run reports the
    uninterrupted run's every epoch and test accuracy: the data order, dropout's masks and the
    learning rate carry on from the last finished epoch (TensorFlow runs deterministically on
    the CPU here, so the numbers are equal, not close)."""
    straight = same_run_folder(tmp_path, "straight")
    result = subprocess.run(
        [sys.executable, "-m", "cnn_mnist", "train", "--config", "run.yaml"],
        cwd=straight,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    (expected_dir,) = (straight / "logs").iterdir()

    resumed = same_run_folder(tmp_path, "resumed")
    process = start(resumed)
    run_dir = wait_for_epochs(resumed, 1, process)
    deadline = time.time() + 120
    while batches_logged(run_dir) < STEPS + 8:  # into epoch 2; the writer flushes every 10
        assert process.poll() is None and time.time() < deadline, process.communicate()
        time.sleep(0.05)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr[-3000:]
    assert len(epoch_records(run_dir)) == 1  # stopped inside the second epoch
    finish_by_resuming(resumed, run_dir)

    expected, got = epoch_records(expected_dir), epoch_records(run_dir)
    assert [e["epoch"] for e in got] == [e["epoch"] for e in expected] == list(range(EPOCHS))
    for want, have in zip(expected, got):
        assert set(have) == set(want) >= {"loss", "accuracy", "val_loss", "val_accuracy"}
        for key in want:
            assert have[key] == pytest.approx(want[key], rel=1e-6, abs=1e-7), (want, have)
    metrics = [json.loads((d / "run.json").read_text())["metrics"] for d in (expected_dir, run_dir)]
    assert metrics[1]["test_accuracy"] == pytest.approx(metrics[0]["test_accuracy"], abs=1e-6)
    assert metrics[1]["test_loss"] == pytest.approx(metrics[0]["test_loss"], rel=1e-6)
