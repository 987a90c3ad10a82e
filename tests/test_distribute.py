"""Distributed training (cnn_mnist/training/distribute.py): TF_CONFIG, the custom step, and real
clusters of `cnn train` processes on 127.0.0.1 (mirrored on 2 logical CPU devices, and two
workers), on a slice of the real digits."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from cnn_mnist.config.load import load_config
from cnn_mnist.core.errors import ConfigError

SLICE = ["--set", "data.limit_train=2048", "--set", "data.limit_test=1000", "--seed", "1"]


def tf_config(ports: list[int], index: int, job: str = "worker") -> str:
    return json.dumps(
        {
            "cluster": {"worker": [f"127.0.0.1:{p}" for p in ports]},
            "task": {"type": job, "index": index},
        }
    )


def free_ports(count: int) -> list[int]:
    """Ports nobody listens on now (bound to port 0, then released)."""
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def test_distribution_settings_are_checked():
    with pytest.raises(
        ConfigError,
        match=r"training\.distribution.*'none', 'mirrored' or "
        r"'multi_worker'.*'gpus'",
    ):
        load_config(sets=["training.distribution=gpus"])
    with pytest.raises(ConfigError, match=r"training\.cpu_devices"):
        load_config(sets=["training.cpu_devices=0"])
    with pytest.raises(ConfigError, match=r"training\.collective_timeout"):
        load_config(sets=["training.collective_timeout=0"])


def test_peer_failures_become_one_readable_line():
    import tensorflow as tf

    from cnn_mnist.training.distribute import peer_failure

    late = tf.errors.DeadlineExceededError(
        None,
        None,
        (
            "Barrier timed out. Id: [Init]Wait_for_all_tasks_to_register::0. This usually happens "
            "because... # of tasks that reached the barrier: 1/2."
        ),
    )
    assert "only 1 of 2 workers joined" in str(peer_failure(late, "could not form the cluster"))
    dead = tf.errors.UnavailableError(
        None,
        None,
        (
            "Graph execution error:\n\nDetected at node CollectiveReduceV2_1 defined at:\n  File "
            '"x.py", line 1\n\nCollective ops is aborted by: Socket closed\nAdditional GRPC error '
            "information from remote target\n\t [[{{node CollectiveReduceV2_1}}]]"
        ),
    )
    message = str(peer_failure(dead, "training stopped"))
    assert message == "training stopped (TensorFlow: Socket closed)"


# --- the custom step, in this process ----------------------------------------------------------


@pytest.mark.parametrize("shuffle", [False, True])
def test_the_distributed_loop_on_one_replica_matches_keras_fit(tiny_mnist, tmp_path, shuffle):
    """Same seed, data and model (dropout included): the custom step (strategy.run, a loss over
    the global batch) trains like `Model.fit`, and drives the same callbacks. Shuffled, both
    read each epoch's order drawn from the seed and the epoch number."""
    from cnn_mnist.config.schema import ModelConfig
    from cnn_mnist.stages import fit
    from cnn_mnist.stages.data import prepare
    from tests.conftest import TINY_LAYERS, fit_both_ways

    config = load_config(
        sets=[
            "training.epochs=2",
            "training.batch_size=50",
            "training.seed=3",
            f"training.shuffle={str(shuffle).lower()}",
            "tensorboard.update_freq=3",
        ]
    )
    layers = [*TINY_LAYERS[:3], {"type": "Dropout", "rate": 0.25}, TINY_LAYERS[3]]
    model_config = ModelConfig.model_validate({"layers": layers})
    data = prepare(tiny_mnist, True, None, None)
    histories, weights, run_dirs = fit_both_ways(config, model_config, data, tmp_path)
    for run_dir in run_dirs.values():
        assert len(fit.read_epochs(run_dir / "epochs.jsonl")) == 2
        assert list((run_dir / "train").glob("events.out.tfevents.*"))
        assert (run_dir / "backup").is_dir()
    assert (
        set(histories["distributed"])
        == set(histories["fit"])
        == {"loss", "accuracy", "val_loss", "val_accuracy"}
    )
    for name, values in histories["fit"].items():
        np.testing.assert_allclose(histories["distributed"][name], values, rtol=1e-4, atol=1e-5)
    for ours, theirs in zip(weights["distributed"], weights["fit"]):
        np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-5)


def test_distributed_training_runs_in_float32():
    """Keras's LossScaleOptimizer fails inside `strategy.run` (Keras 3.15: "No gradients
    provided"), so "auto" stays float32 under a strategy, and asking for float16 is an error."""
    from cnn_mnist.stages.model import accelerator_plan

    config = load_config(sets=["training.distribution=mirrored"])
    plan = accelerator_plan(config.compile, [("NVIDIA H100", (9, 0))], distributed=True)
    assert (plan.dtype_policy, plan.steps_per_execution) == ("float32", 1)
    amx = accelerator_plan(config.compile, [], frozenset({"amx_bf16"}), distributed=True)
    assert amx.dtype_policy == "float32"
    with pytest.raises(
        ConfigError,
        match="compile.mixed_precision: true does not work with training.distribution 'mirrored'",
    ):
        load_config(sets=["training.distribution=mirrored", "compile.mixed_precision=true"])


# --- real processes on the real digits ---------------------------------------------------------


def cnn(*args, cwd: Path, env: dict | None = None, **kwargs) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "cnn_mnist", "train", *args],
        cwd=cwd,
        env={**os.environ, **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kwargs,
    )


def finish(process: subprocess.Popen, timeout: float = 240) -> tuple[int, str, str]:
    out, err = process.communicate(timeout=timeout)
    return process.returncode, out, err


def record(folder: Path) -> dict:
    (path,) = (folder / "logs" / "fit").glob("*/run.json")
    return json.loads(path.read_text())


@pytest.fixture(scope="module")
def single_process(real_mnist_path, tmp_path_factory):
    """The same slice, seed and epochs, trained in one ordinary process, in float32 as under
    tf.distribute (where `auto` picks bfloat16 on a CPU with it, 2 epochs end ~0.015 apart)."""
    folder = tmp_path_factory.mktemp("single")
    code, out, err = finish(
        cnn(
            "--data",
            str(real_mnist_path),
            "--epochs",
            "2",
            *SLICE,
            "-q",
            "--set",
            "compile.mixed_precision=false",
            cwd=folder,
        )
    )
    assert code == 0, err
    return record(folder)


@pytest.mark.slow
def test_mirrored_on_two_logical_cpu_devices(real_mnist_path, tmp_path, single_process):
    code, out, err = finish(
        cnn(
            "--distribution",
            "mirrored",
            "--data",
            str(real_mnist_path),
            "--epochs",
            "2",
            *SLICE,
            cwd=tmp_path,
        )
    )
    assert code == 0, err
    assert "Traceback" not in err
    run = record(tmp_path)
    d = run["distribution"]
    assert (d["strategy"], d["replicas"], d["global_batch_size"], d["per_replica_batch_size"]) == (
        "mirrored",
        2,
        128,
        64,
    )
    assert len(d["local_devices"]) == 2 and all("CPU" in dev for dev in d["local_devices"])
    assert d["learning_rate"] == 0.001 == run["config"]["compile"]["learning_rate"]
    assert run["metrics"]["epochs_completed"] == 2
    assert abs(run["metrics"]["test_accuracy"] - single_process["metrics"]["test_accuracy"]) <= 0.01
    assert "Distributed   mirrored: 2 replicas" in out


@pytest.mark.slow
def test_two_workers_train_in_lockstep_and_the_chief_saves(
    real_mnist_path, tmp_path, single_process
):
    ports = free_ports(2)
    folders = [tmp_path / "chief", tmp_path / "other"]
    processes = []
    for index, folder in enumerate(folders):
        folder.mkdir()
        processes.append(
            cnn(
                "--distribution",
                "multi_worker",
                "--data",
                str(real_mnist_path),
                "--epochs",
                "2",
                *SLICE,
                cwd=folder,
                env={"TF_CONFIG": tf_config(ports, index)},
            )
        )
    (chief_code, chief_out, chief_err), (code, out, err) = [finish(p) for p in processes]
    assert chief_code == 0, chief_err
    assert code == 0, err
    assert list(folders[1].iterdir()) == []  # the other worker wrote nothing here
    run = record(folders[0])
    assert run["status"] == "completed"
    # The chief alone wrote the run's hparams for TensorBoard (one event file in the run folder).
    (run_dir,) = (folders[0] / "logs" / "fit").iterdir()
    assert run["hparams"]["training.batch_size"] == 128
    assert len(list(run_dir.glob("events.out.tfevents.*"))) == 1
    d = run["distribution"]
    assert (d["strategy"], d["replicas"], d["workers"], d["global_batch_size"]) == (
        "multi_worker",
        2,
        2,
        128,
    )
    # Identical final weights: the other worker prints the fingerprint the chief recorded,
    # and the chief's saved model has those weights.
    assert f"weights {d['weights_sha256'][:16]}" in out
    import keras

    from cnn_mnist.stages.evaluate import evaluate
    from cnn_mnist.training.distribute import weights_sha256

    model_path = folders[0] / "models" / "digits_recognition_cnn.h5"
    model = keras.models.load_model(model_path, compile=False)
    assert weights_sha256(model) == d["weights_sha256"]
    from cnn_mnist.stages.data import load_mnist, prepare

    test = prepare(load_mnist(real_mnist_path, test_only=True), True, None, 1000)
    evaluation = evaluate(model, test.x_test, test.labels_test)
    assert evaluation.accuracy == pytest.approx(run["metrics"]["test_accuracy"], abs=1e-9)
    assert abs(evaluation.accuracy - single_process["metrics"]["test_accuracy"]) <= 0.01


@pytest.mark.slow
def test_a_dead_worker_stops_the_chief_and_the_cluster_resumes(real_mnist_path, tmp_path):
    ports = free_ports(2)
    folders = [tmp_path / "chief", tmp_path / "other"]
    for folder in folders:
        folder.mkdir()
    common = ["--distribution", "multi_worker", "--data", str(real_mnist_path)]
    start = [*common, "--epochs", "4", *SLICE, "--set", "training.collective_timeout=30"]
    chief = cnn(*start, cwd=folders[0], env={"TF_CONFIG": tf_config(ports, 0)})
    other = cnn(*start, cwd=folders[1], env={"TF_CONFIG": tf_config(ports, 1)})
    deadline = time.time() + 180
    while (
        not list((folders[0] / "logs" / "fit").glob("*/epochs.jsonl"))
        or len(next((folders[0] / "logs" / "fit").glob("*/epochs.jsonl")).read_text().splitlines())
        < 1
    ):
        assert time.time() < deadline and chief.poll() is None, chief.communicate()
        time.sleep(0.1)
    other.send_signal(signal.SIGKILL)
    killed = time.time()
    code, out, err = finish(chief, timeout=120)
    other.communicate()
    assert time.time() - killed < 60  # bounded by the timeouts, not a hang
    assert code == 1
    assert "Traceback" not in err
    assert "training stopped: another worker stopped" in err
    run = record(folders[0])
    assert run["status"] == "failed" and run["epochs_completed"] >= 1
    kept = run["epochs_completed"]
    assert f"cnn train --resume {run['run_id']}" in err

    # Restart the whole cluster with --resume: it carries on from the chief's last epoch.
    ports = free_ports(2)
    resumed = [
        cnn(*common, "--resume", cwd=folder, env={"TF_CONFIG": tf_config(ports, i)})
        for i, folder in enumerate(folders)
    ]
    (code0, out0, err0), (code1, out1, err1) = [finish(p) for p in resumed]
    assert code0 == 0, f"{err0}\n--- worker 1 ({code1}):\n{err1}"
    assert code1 == 0, err1
    assert "differs from the chief's" not in err1  # it was told to follow the chief
    run = record(folders[0])
    assert run["status"] == "completed"
    assert run["resumed_from_epoch"] == kept
    assert run["metrics"]["epochs_completed"] == 4
    assert f"Epoch {kept + 1}/4" in out1 and f"Epoch {kept}/4" not in out1  # both skipped ahead
    assert f"weights {run['distribution']['weights_sha256'][:16]}" in out1
    assert list(folders[1].iterdir()) == []


@pytest.mark.slow
def test_a_worker_that_never_joins_is_a_clear_error_in_bounded_time(real_mnist_path, tmp_path):
    started = time.time()
    code, out, err = finish(
        cnn(
            "--distribution",
            "multi_worker",
            "--data",
            str(real_mnist_path),
            *SLICE,
            "--set",
            "training.collective_timeout=3",
            cwd=tmp_path,
            env={"TF_CONFIG": tf_config(free_ports(2), 0)},
        ),
        timeout=120,
    )
    assert code == 1
    assert time.time() - started < 60
    assert "Traceback" not in err
    assert "only 1 of 2 workers joined within training.collective_timeout" in err
    assert not list(tmp_path.glob("logs/fit/*"))  # no empty run left behind


def test_multi_worker_without_tf_config_fails_before_tensorflow(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "TF_CONFIG"}
    process = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from cnn_mnist.cli import cli; "
            "sys.argv=['cnn','train','--distribution','multi_worker']; "
            "import atexit; atexit.register(lambda: print('tf' if 'tensorflow' in sys.modules "
            "else 'no-tf')); cli()",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
    )
    assert process.returncode == 2
    assert "TF_CONFIG environment variable" in process.stderr
    assert "Traceback" not in process.stderr
    assert process.stdout.strip() == "no-tf"


@pytest.mark.slow
def test_workers_with_other_timeouts_keep_each_others_heartbeats(real_mnist_path, tmp_path):
    """As on `cnn train --resume`, where the other workers start with the default config (a
    120 s collective_timeout) and the chief with the run's: heartbeats must not follow
    collective_timeout, or the chief's coordination service (10 s here) declared the other
    worker dead ("stopped sending heartbeats") as soon as the run outlived it."""
    ports = free_ports(2)
    folders = [tmp_path / "chief", tmp_path / "other"]
    processes = []
    for index, (folder, extra) in enumerate(
        zip(folders, (["--set", "training.collective_timeout=10"], []))
    ):
        folder.mkdir()
        processes.append(
            cnn(
                "--distribution",
                "multi_worker",
                "--data",
                str(real_mnist_path),
                "--epochs",
                "8",
                *SLICE,
                "-q",
                *extra,
                cwd=folder,
                env={"TF_CONFIG": tf_config(ports, index)},
            )
        )
    started = time.time()
    (code0, _, err0), (code1, _, err1) = [finish(p) for p in processes]
    assert time.time() - started > 20, "too short to outlive the chief's timeout"
    assert code0 == 0, f"{err0}\n--- worker 1 ({code1}):\n{err1}"
    assert code1 == 0, err1
