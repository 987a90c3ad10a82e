"""Runs that cannot work end in one line, a non-zero exit and nothing lost (cnn_mnist/stages/guards.py):
a diverging loss, a model at chance, a model too large for memory, an out-of-memory while
training, a model input that is not the data's shape, and a run killed without a word."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

from cnn_mnist.config.load import load_config
from cnn_mnist.core.errors import CnnError, ConfigError
from cnn_mnist.stages import guards
from cnn_mnist.stages.data import Mnist
from tests.conftest import cnn_process, synthetic_digits, write_idx_folder

QUICK = ["tensorboard.enabled=false", "training.epochs=1"]


def test_a_loss_that_is_not_finite_stops_the_run_at_once(tmp_path, tiny_config_file):
    from cnn_mnist.training.pipeline import train

    good = train(load_config(tiny_config_file, sets=QUICK), progress=0)
    stable = good.model_path.read_bytes()
    config = load_config(tiny_config_file, sets=[*QUICK, "compile.learning_rate=1e30"])
    with pytest.raises(
        guards.TrainingFailed,
        match=r"training diverged: the loss became nan at "
        r"step \d+ of epoch 1 \(learning rate 1e\+30\); lower "
        r"compile.learning_rate, e.g. --learning-rate 1e\+29",
    ) as caught:
        train(config, progress=0)
    assert "\n" not in str(caught.value)
    (failed,) = [p for p in (tmp_path / "logs").iterdir() if p.name != good.run_id]
    record = json.loads((failed / "run.json").read_text())
    assert record["status"] == "failed" and "training diverged" in record["error"]
    assert good.model_path.read_bytes() == stable  # the good run's model stays published
    assert not (failed / "model.h5").exists()


def test_a_run_at_chance_says_so_and_keeps_the_better_model(tmp_path, tiny_config_file):
    """Labels that do not go with their images (shuffled): the model cannot beat a constant
    guess; it is kept in its run folder, not published over the one that learnt."""
    from cnn_mnist.training.pipeline import train

    good = train(load_config(tiny_config_file, sets=QUICK), progress=0)
    stable = good.model_path.read_bytes()
    rng = np.random.default_rng(0)
    x_train, y_train = synthetic_digits(512, seed=1)
    x_test, y_test = synthetic_digits(1000, seed=2)
    noise = write_idx_folder(
        tmp_path / "noise",
        Mnist(x_train, rng.permutation(y_train), x_test, rng.permutation(y_test), "shuffled"),
    )
    config = load_config(tiny_config_file, sets=[*QUICK, f"data.path={noise}"])
    with pytest.raises(
        guards.TrainingFailed,
        match=r"the model did not learn: test accuracy "
        r"0\.\d+ is no better than always answering the commonest class",
    ) as caught:
        train(config, progress=0)
    message = str(caught.value)
    assert "\n" not in message and f"still holds run {good.run_id}'s model" in message
    assert good.model_path.read_bytes() == stable
    (failed,) = [p for p in (tmp_path / "logs").iterdir() if p.name != good.run_id]
    record = json.loads((failed / "run.json").read_text())
    assert record["status"] == "failed" and record["metrics"]["test_accuracy"] < 0.15
    assert (failed / "model.h5").is_file()  # nothing lost: the run's own model is there


def test_chance_level_is_the_commonest_class():
    labels = np.array([1, 1, 1, 2, 3, 4, 5, 6, 7, 8])
    assert guards.chance_level(labels) == 0.3
    assert guards.at_chance(0.3, labels) and not guards.at_chance(0.5, labels)


def test_a_model_too_large_for_memory_is_refused_before_tensorflow(tmp_path):
    """The issue's example: the lecture's model with a billion-unit Dense layer."""
    started = time.time()
    result = cnn_process(
        ["train", "--set", "model.layers[5].units=1000000000"], tmp_path, dict(os.environ)
    )
    assert result.returncode == 2, result.stderr
    (line,) = result.stderr.strip().splitlines()
    # (3x3x1+1)x32 + (3x3x32+1)x64 + (9216+1)x10^9 + (10^9+1)x10, 20 bytes each with Adam
    assert line.startswith(
        "error: the model is too large for memory: 9,227,000,018,826 "
        "parameters need about 184,540.0 GB to train"
    )
    assert "model.layers[5] (Dense, units 1,000,000,000) holds 9,217,000,000,000" in line
    assert "make it smaller" in line and "Traceback" not in result.stderr
    assert not list(tmp_path.glob("logs/fit/*"))  # no run folder left behind
    assert time.time() - started < 60  # before TensorFlow and the data (a generous bound)


def test_the_memory_estimate_counts_the_optimizer_slots():
    assert guards.model_memory(1000, "adam") == 1000 * 4 * 5
    assert guards.model_memory(1000, "sgd") == 1000 * 4 * 3
    have, where = guards.available_memory()
    assert have is None or (have > 0 and where)


class AllocateTooMuch:
    """A Keras callback asking TensorFlow for 4 TiB at the first step: a real allocation
    failure during training (ResourceExhaustedError)."""

    def __new__(cls):
        import keras
        import tensorflow as tf

        class Callback(keras.callbacks.Callback):
            def on_train_batch_begin(self, batch, logs=None):
                tf.zeros((2**40,))

        return Callback()


def test_out_of_memory_while_training_is_one_line(tmp_path, tiny_config_file):
    from cnn_mnist.training.pipeline import train

    config = load_config(tiny_config_file, sets=QUICK)
    with pytest.raises(
        CnnError,
        match=r"out of memory while training \([\d,]+ parameters, batch "
        r"size 32 .*\): lower training.batch_size",
    ) as caught:
        train(config, progress=0, callbacks=(AllocateTooMuch(),))
    assert "\n" not in str(caught.value)
    (run_dir,) = (tmp_path / "logs").iterdir()
    record = json.loads((run_dir / "run.json").read_text())
    assert record["status"] == "failed" and record["error"].startswith("out of memory")


def test_an_input_shape_unlike_the_data_is_refused_before_training(tmp_path, tiny_config_file):
    from cnn_mnist.training.pipeline import train
    from cnn_mnist.training.request import request

    config = load_config(tiny_config_file, sets=[*QUICK, "model.input_shape=[32, 32, 1]"])
    with pytest.raises(
        ConfigError,
        match=r"model.input_shape is 32x32x1, but the data's images "
        r"are 28x28x1; set model.input_shape: \[28, 28, 1\]",
    ):
        train(config, progress=0)
    assert not (tmp_path / "logs").exists() or not list((tmp_path / "logs").iterdir())
    # A run to resume whose config has that shape (say, edited): --resume says the same.
    run = train(load_config(tiny_config_file, sets=QUICK), progress=0)
    record = json.loads((run.run_dir / "run.json").read_text())
    (run.run_dir / "run.json").write_text(json.dumps({**record, "status": "interrupted"}))
    saved = (run.run_dir / "config.yaml").read_text()
    (run.run_dir / "config.yaml").write_text(saved.replace("- 28\n  - 28\n", "- 32\n  - 32\n"))
    wanted = request(str(tiny_config_file), resume=run.run_id)
    with pytest.raises(
        ConfigError,
        match=r"model.input_shape is 32x32x1, but the data's images "
        r"are 28x28x1",
    ):
        train(wanted.config, progress=0, resume=wanted.resume)


def test_a_killed_run_shows_as_interrupted(tmp_path):
    from cnn_mnist.core.stamps import now
    from cnn_mnist.tools.runs import summarize

    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    run_dir = tmp_path / "20260101-000000-abcd"
    run_dir.mkdir()
    record = {
        "run_id": run_dir.name,
        "status": "running",
        "started_at": now(),
        "host": socket.gethostname(),
        "pid": gone.pid,
    }
    (run_dir / "run.json").write_text(json.dumps(record))
    summary = summarize(run_dir)
    assert summary.status == "interrupted" and f"({gone.pid} on " in summary.problem
    (run_dir / "run.json").write_text(json.dumps({**record, "pid": os.getpid()}))
    assert summarize(run_dir).status == "running"  # alive (and started before it): training
    old = {**record, "pid": os.getpid(), "started_at": "2020-01-01T00:00:00+00:00"}
    (run_dir / "run.json").write_text(json.dumps(old))
    assert summarize(run_dir).status == "interrupted"  # its id taken by a later process
    (run_dir / "run.json").write_text(json.dumps({**record, "host": "another-machine"}))
    assert summarize(run_dir).status == "running"  # another machine's: not ours to say
