"""Interrupting and resuming `cnn train` as a real process: SIGINT, SIGTERM and SIGKILL."""

import json
import signal
import subprocess
import sys
import time

import pytest
import yaml

from cnn_mnist.data import IDX_FILES
from tests.conftest import synthetic_digits, write_idx

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
    return subprocess.Popen([sys.executable, "-m", "cnn_mnist", "train", "--config", "run.yaml",
                             *args], cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


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


def finish_by_resuming(cwd, run_dir, *args):
    result = subprocess.run([sys.executable, "-m", "cnn_mnist", "train", "--config", "run.yaml",
                             "--resume", *args], cwd=cwd, capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"Resuming run {run_dir.name}" in result.stderr
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
    assert json.loads((run_dir / "run.json").read_text())["status"] == "running"
    record = finish_by_resuming(slow_run, run_dir, run_dir.name)
    assert record["resumed_from_epoch"] == finished >= 1


def test_resume_with_nothing_to_resume(slow_run):
    result = subprocess.run([sys.executable, "-m", "cnn_mnist", "train", "--config", "run.yaml",
                             "--resume"], cwd=slow_run, capture_output=True, text=True)
    assert result.returncode == 2 and "no unfinished run" in result.stderr
    result = subprocess.run([sys.executable, "-m", "cnn_mnist", "train", "--config", "run.yaml",
                             "--resume", "--epochs", "5"], cwd=slow_run, capture_output=True,
                            text=True)
    assert result.returncode == 2 and "drop --epochs" in result.stderr
