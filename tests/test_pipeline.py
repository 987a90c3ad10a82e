"""The whole training run (cnn_mnist/training/pipeline.py): artifacts, run record, seeds, stopping,
checkpoints, the stable model path, and what happens when outputs cannot be written."""

import json
from pathlib import Path

import numpy as np
import pytest

from cnn_mnist.config.load import load_config
from cnn_mnist.stages.data import prepare
from tests.test_fit import event_tags


def test_same_seed_same_metrics(tiny_config_file):
    from cnn_mnist.training.pipeline import train

    quick = ["tensorboard.enabled=false", "training.epochs=1"]
    config = load_config(tiny_config_file, sets=quick)
    first = train(config, progress=0)
    second = train(config, progress=0)
    assert first.run_id != second.run_id
    assert first.evaluation.loss == second.evaluation.loss
    np.testing.assert_array_equal(first.evaluation.probabilities, second.evaluation.probabilities)
    other = train(load_config(tiny_config_file, sets=["training.seed=8", *quick]), progress=0)
    assert other.evaluation.loss != first.evaluation.loss


def test_pipeline_writes_every_artifact(tiny_config_file):
    import json

    import keras

    from cnn_mnist.training.pipeline import train

    config = load_config(tiny_config_file)
    result = train(config, config_source=str(tiny_config_file), progress=0)
    record = json.loads(result.record_path.read_text())
    assert record["run_id"] == result.run_id and record["status"] == "completed"
    assert record["seed"] == 7 and record["config"]["training"]["seed"] == 7
    assert record["metrics"]["test_accuracy"] == pytest.approx(result.evaluation.accuracy)
    assert len(record["metrics"]["history"]["loss"]) == 2
    assert set(record["timings_s"]) >= {"load_data", "fit", "evaluate", "save", "total"}
    assert record["data"]["num_train"] == 512 and len(record["data"]["sha256"]) == 4
    assert record["versions"]["keras"] == keras.__version__
    for key in ("model", "config", "confusion_matrix_png", "confusion_matrix_json"):
        assert Path(record["paths"][key]).is_file(), key
    assert load_config(record["paths"]["config"]) == config  # the resolved config, reloadable
    assert "confusion_matrix" in event_tags(result.run_dir / "evaluation")
    model = keras.models.load_model(result.model_path)
    x = prepare(
        __import__("cnn_mnist.stages.data", fromlist=["load_mnist"]).load_mnist(config.data.path)
    ).x_test
    accuracy = (model.predict(x, verbose=0).argmax(1) == result.evaluation.labels).mean()
    assert accuracy == pytest.approx(result.evaluation.accuracy)


def test_unwritable_model_path_fails_before_training(tmp_path, tiny_config_file):
    from cnn_mnist.core.errors import OutputError
    from cnn_mnist.training.pipeline import train

    (tmp_path / "blocked").write_text("a file where a folder should be")
    config = load_config(tiny_config_file, sets=[f"output.model_path={tmp_path}/blocked/m.h5"])
    with pytest.raises(OutputError, match="cannot write the model"):
        train(config, progress=0)
    assert not (tmp_path / "logs").exists() or not list((tmp_path / "logs").glob("*/run.json"))


def test_early_stopping_stops_and_restores(tmp_path, tiny_config_file):
    import json

    from cnn_mnist.training.pipeline import train

    # val_loss never improves by 100: stop after patience + 1 epochs. (Not a learning rate of ~0:
    # a model left at chance is a failed run.)
    config = load_config(
        tiny_config_file,
        sets=[
            "training.epochs=10",
            "training.early_stopping={monitor: val_loss, patience: 1, min_delta: 100}",
        ],
    )
    result = train(config, progress=0)
    record = json.loads(result.record_path.read_text())
    assert result.epochs_run == 2 and len(record["metrics"]["history"]["loss"]) == 2


def test_checkpoint_keeps_best_model(tmp_path, tiny_config_file):
    import json

    from cnn_mnist.stages.handle import open_saved
    from cnn_mnist.training.pipeline import train

    config = load_config(
        tiny_config_file, sets=["training.epochs=3", "training.checkpoint={monitor: val_accuracy}"]
    )
    result = train(config, progress=0)
    best = result.run_dir / "best.h5"
    handle = open_saved(best)
    assert best.is_file() and handle.keras_model() is not None
    history = json.loads(result.record_path.read_text())["metrics"]["history"]["val_accuracy"]
    card = handle.card.to_json()  # the run's card, then the epoch and its value
    assert list(card) == ["run_id", "config", "dataset", "class_names", "epoch", "val_accuracy"]
    assert card["run_id"] == result.run_id
    assert card["val_accuracy"] == pytest.approx(max(history))
    assert card["epoch"] == history.index(max(history))


def test_stable_model_links_to_the_run_and_keeps_the_old_one(tiny_config_file):
    from cnn_mnist.stages.handle import open_saved
    from cnn_mnist.training.pipeline import train

    config = load_config(tiny_config_file, sets=["training.epochs=1"])
    first = train(config, progress=0)
    second = train(config, progress=0)
    assert second.replaced_run == first.run_id
    assert open_saved(second.model_path).run_id == second.run_id
    assert open_saved(first.run_dir / "model.h5").run_id == first.run_id  # not lost
    assert not (first.run_dir / "backup").exists()


def test_foreign_model_is_not_replaced_without_overwrite(tmp_path, tiny_config_file):
    from cnn_mnist.core.errors import OutputError
    from cnn_mnist.training.pipeline import train

    config = load_config(tiny_config_file, sets=["training.epochs=1"])
    target = tmp_path / "models" / "tiny.h5"
    target.parent.mkdir(parents=True)
    target.write_bytes(b"someone else's model")
    with pytest.raises(OutputError, match="not saved by `cnn train`; pass --overwrite"):
        train(config, progress=0)
    assert target.read_bytes() == b"someone else's model"
    assert not list((tmp_path / "logs").glob("*"))
    train(config, progress=0, overwrite=True)
    assert target.read_bytes()[:4] == b"\x89HDF"


def test_a_tflite_beside_the_model_that_train_did_not_export_is_kept(tmp_path, tiny_config_file):
    """An int8 export the user put at models/NAME.tflite was replaced without a word."""
    from cnn_mnist.core.errors import OutputError
    from cnn_mnist.training.pipeline import train

    config = load_config(tiny_config_file, sets=["training.epochs=1"])
    first = train(config, progress=0)  # its .tflite beside it is train's own: replaced freely
    lite = first.model_path.with_suffix(".tflite")
    second = train(config, progress=0)
    assert lite.read_bytes() == (second.run_dir / "model.tflite").read_bytes()
    lite.write_bytes(b"the user's int8 export")
    with pytest.raises(OutputError, match=r"tiny.tflite exists and was not written.*--overwrite"):
        train(config, progress=0)
    assert lite.read_bytes() == b"the user's int8 export"
    first.model_path.unlink()  # no model there either: still the user's
    with pytest.raises(OutputError, match=r"tiny.tflite exists and was not written"):
        train(config, progress=0)
    assert lite.read_bytes() == b"the user's int8 export"
    third = train(config, progress=0, overwrite=True)
    assert lite.read_bytes() == (third.run_dir / "model.tflite").read_bytes()


def test_a_file_that_appears_at_the_model_path_during_training_is_kept(tmp_path, tiny_config_file):
    """The model path was checked only at start: a file put there meanwhile was replaced."""
    import keras

    from cnn_mnist.core.errors import OutputError
    from cnn_mnist.training.pipeline import train

    config = load_config(tiny_config_file, sets=["training.epochs=1"])
    target = Path(config.output.model_path)

    class UserSavesThere(keras.callbacks.Callback):
        def on_train_end(self, logs=None):
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(b"saved by the user meanwhile")

    with pytest.raises(OutputError, match="It appeared while run .* trained") as caught:
        train(config, progress=0, callbacks=(UserSavesThere(),))
    assert target.read_bytes() == b"saved by the user meanwhile"
    assert not target.with_suffix(".tflite").exists()
    (record,) = Path(config.tensorboard.log_dir).glob("*/run.json")
    data = json.loads(record.read_text())
    assert data["status"] == "failed" and (record.parent / "model.h5").is_file()
    assert f"--resume {data['run_id']} --overwrite" in str(caught.value)
    assert len(str(caught.value).splitlines()) == 2


@pytest.mark.slow
def test_two_runs_at_once_do_not_mix(tmp_path, tiny_config_file):
    import json
    import subprocess
    import sys

    command = [
        sys.executable,
        "-m",
        "cnn_mnist",
        "train",
        "--quiet",
        "--config",
        str(tiny_config_file),
    ]
    processes = [
        subprocess.Popen(
            command, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for _ in range(2)
    ]
    outputs = [p.communicate(timeout=300) for p in processes]
    assert [p.returncode for p in processes] == [0, 0], outputs
    records = [json.loads(p.read_text()) for p in (tmp_path / "logs").glob("*/run.json")]
    assert len({r["run_id"] for r in records}) == 2
    assert all(r["status"] == "completed" for r in records)
    for record in records:
        run_model = record["paths"]["run_model"]
        assert run_model.startswith(record["paths"]["logs"])
    from cnn_mnist.stages.handle import open_saved

    handle = open_saved(tmp_path / "models" / "tiny.h5")
    assert handle.run_id in {r["run_id"] for r in records}
    handle.keras_model()
    assert sorted(p.name for p in (tmp_path / "models").iterdir()) == ["tiny.h5", "tiny.tflite"]


def test_run_record_says_how_it_ran(tiny_trained):
    """run.json's `accelerator`: this machine's plan, with XLA as Keras resolved it."""
    import tensorflow as tf

    from cnn_mnist.stages.model import cpu_flags

    if tf.config.list_physical_devices("GPU"):
        pytest.skip("the CPU plan is checked here; the GPU plan in test_model.py")
    _, result = tiny_trained
    record = json.loads(result.record_path.read_text())
    native = {"amx_bf16", "avx512_bf16"} & cpu_flags()
    expected = "mixed_bfloat16" if native else "float32"
    reason = record["accelerator"].pop("reason")
    assert record["accelerator"] == {
        "device": "cpu",
        "jit_compile": False,
        "steps_per_execution": 1,
        "dtype_policy": expected,
    }
    assert reason.startswith("auto: ") and (not native or sorted(native)[0] in reason)


# --- a full disk: one clear message, the run marked failed, no partial backup ------------------


def _no_space(*args, **kwargs):
    import errno

    raise OSError(errno.ENOSPC, "No space left on device")


def test_a_write_error_in_training_fails_the_run_cleanly(tiny_config_file, monkeypatch):
    """Without root: the backup of epoch 2 cannot be written (ENOSPC from the writer)."""
    import keras

    from cnn_mnist.core.errors import OutputError
    from cnn_mnist.training.pipeline import train

    config = load_config(tiny_config_file, sets=["training.epochs=3"])
    model_path = Path(config.output.model_path)
    earlier = train(load_config(tiny_config_file, sets=["training.epochs=1"]), progress=0)
    before = model_path.read_bytes()
    save_weights, calls = keras.Model.save_weights, []

    def second_fails(self, *args, **kwargs):
        calls.append(args)
        return _no_space() if len(calls) == 2 else save_weights(self, *args, **kwargs)

    monkeypatch.setattr(keras.Model, "save_weights", second_fails)
    with pytest.raises(OutputError) as caught:
        train(config, progress=0)
    message = str(caught.value)
    assert "could not write the backup of epoch 2 to " in message and "no space left" in message
    assert "is marked failed and keeps its last finished epoch" in message
    (run_dir,) = [
        p.parent
        for p in Path(config.tensorboard.log_dir).glob("*/run.json")
        if p.parent != earlier.run_dir
    ]
    record = json.loads((run_dir / "run.json").read_text())
    assert record["status"] == "failed" and "no space left" in record["error"]
    backup = sorted(p.name for p in (run_dir / "backup").iterdir())
    assert backup == ["latest.weights.h5", "training_metadata.json"]  # epoch 1's, whole
    assert json.loads((run_dir / "backup" / "training_metadata.json").read_text())["epoch"] == 1
    assert model_path.read_bytes() == before  # the earlier model is untouched


def test_the_backup_file_writer_failing_leaves_the_last_backup(tmp_path, tiny_mnist):
    from cnn_mnist.core.errors import OutputError
    from cnn_mnist.stages.fit import Backup
    from cnn_mnist.stages.model import build_model, compile_model

    config = load_config(
        sets=["model.layers=[{type: Flatten}, {type: Dense, units: 10, activation: softmax}]"]
    )
    model = compile_model(build_model(config.model), config.compile)
    backup = Backup(str(tmp_path / "backup"), double_checkpoint=True, delete_checkpoint=False)
    backup.set_model(model)
    backup.on_epoch_end(0)
    good = (tmp_path / "backup" / "latest.weights.h5").read_bytes()
    model.save_weights = _no_space
    with pytest.raises(OutputError, match=r"backup of epoch 2 to .*backup: no space left"):
        backup.on_epoch_end(1)
    assert (tmp_path / "backup" / "latest.weights.h5").read_bytes() == good
    assert not list((tmp_path / "backup").glob("next*"))


@pytest.mark.slow
def test_a_full_disk_for_real(tmp_path, idx_folder):
    """A small tmpfs, nearly full after epoch 1 (root only: skipped with a message elsewhere)."""
    import shutil
    import signal
    import subprocess
    import sys
    import time

    import yaml

    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(disk)],
        capture_output=True,
        text=True,
    )
    if mounted.returncode != 0:
        pytest.skip(
            f"cannot mount a tmpfs here ({mounted.stderr.strip()}): the write-error "
            "path is tested without root above"
        )
    try:
        config = {
            "data": {"path": str(idx_folder)},
            "training": {"epochs": 4, "seed": 1},
            "model": {
                "layers": [
                    {"type": "Flatten"},
                    {"type": "Dense", "units": 256, "activation": "relu"},
                    {"type": "Dense", "units": 10, "activation": "softmax"},
                ]
            },
            "tensorboard": {"log_dir": str(disk / "logs")},
            "output": {"model_path": str(disk / "models" / "m.h5")},
        }
        (tmp_path / "run.yaml").write_text(yaml.safe_dump(config))
        command = [sys.executable, "-m", "cnn_mnist", "train", "-q", "--config", "run.yaml"]
        assert (
            subprocess.run(
                command + ["--epochs", "1"], cwd=tmp_path, capture_output=True
            ).returncode
            == 0
        )
        earlier = (disk / "models" / "m.h5").read_bytes()
        process = subprocess.Popen(
            command, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        deadline = time.monotonic() + 120
        while not [
            p
            for p in (disk / "logs").glob("*/backup/latest.weights.h5")
            if not (p.parent.parent / "model.h5").exists()
        ]:
            assert time.monotonic() < deadline and process.poll() is None
            time.sleep(0.05)
        process.send_signal(signal.SIGSTOP)
        free = shutil.disk_usage(disk).free
        (disk / "filler").write_bytes(b"\0" * max(0, free - 200_000))  # 200 kB left
        process.send_signal(signal.SIGCONT)
        out, err = process.communicate(timeout=120)
        assert process.returncode == 1, err
        assert "Traceback" not in err and "could not write" in err and "no space left" in err
        assert "cnn train --resume" in err and len(err.strip().splitlines()) <= 3, err
        (run_dir,) = [
            p.parent
            for p in (disk / "logs").glob("*/run.json")
            if not (p.parent / "model.h5").exists()
        ]
        record = json.loads((run_dir / "run.json").read_text())
        assert record["status"] == "failed", err
        assert not list((run_dir / "backup").glob("next*"))  # nothing partial to trust
        assert (disk / "models" / "m.h5").read_bytes() == earlier
    finally:
        subprocess.run(["umount", "-l", str(disk)])


def test_a_resumed_run_keeps_its_config_name_and_records_its_hparams(tiny_config_file):
    """`cnn train --resume` takes no --config (its source reads `default`): the run record keeps
    the config the run was started from, which `cnn runs` compares against."""
    from cnn_mnist.training.pipeline import train
    from cnn_mnist.training.request import request

    config = load_config(tiny_config_file, sets=["training.epochs=1"])
    first = train(config, config_source=str(tiny_config_file), progress=0)
    record = json.loads(first.record_path.read_text())
    assert record["hparams"]["config"] == "tiny.yaml" and record["hparams"]["training.epochs"] == 1
    record["status"] = "interrupted"  # as if stopped: resumable
    first.record_path.write_text(json.dumps(record))
    wanted = request(str(tiny_config_file), resume=first.run_id)
    train(wanted.config, config_source="default", progress=0, resume=wanted.resume)
    resumed = json.loads(first.record_path.read_text())
    assert resumed["status"] == "completed"
    assert resumed["config_source"] == str(tiny_config_file)
    assert resumed["hparams"]["config"] == "tiny.yaml"


@pytest.mark.parametrize("precision", ["false", "true"])  # the report: last epoch's or its own
def test_a_custom_dataset_run_records_its_dataset_and_names(tmp_path, tiny_config_file, precision):
    """The dataset and its class names go into run.json, the model file and the reports."""
    from cnn_mnist.stages.handle import open_saved
    from cnn_mnist.training.pipeline import train

    names = [f"kana {k}" for k in range(10)]
    config = load_config(
        tiny_config_file,
        sets=[
            "data.dataset=custom",
            f"data.class_names={json.dumps(names)}",
            "training.epochs=1",
            f"compile.mixed_precision={precision}",
        ],
    )
    result = train(config, progress=0)
    record = json.loads(result.record_path.read_text())
    assert record["dataset"] == "custom" and record["config"]["data"]["dataset"] == "custom"
    assert record["data"]["dataset"] == "custom" and record["data"]["class_names"] == names
    handle = open_saved(result.model_path)
    assert handle.dataset == handle.card.dataset == "custom"
    assert handle.class_names == handle.card.class_names == names
    assert result.evaluation.class_names == names
    saved = json.loads(Path(result.paths["confusion_matrix_json"]).read_text())
    assert saved["class_names"] == names
    # TensorBoard's confusion-matrix table (beside its image, drawn from the same PNG).
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(result.run_dir / "evaluation"), size_guidance={"tensors": 0})
    events.Reload()
    text = events.Tensors("confusion_matrix_table")[-1].tensor_proto.string_val[0].decode()
    assert "0 kana 0" in text and "9 kana 9" in text
    assert "confusion_matrix" in events.Tags()["tensors"]


def test_an_mnist_run_records_mnist(tiny_trained):
    from cnn_mnist.core.datasets import DIGITS
    from cnn_mnist.stages.handle import open_saved

    model_path, result = tiny_trained
    assert json.loads(result.record_path.read_text())["dataset"] == "mnist"
    card = open_saved(model_path).card.to_json()  # as it has always been stored
    assert list(card) == ["run_id", "config", "dataset", "class_names", "litert_sha256"]
    assert card["dataset"] == "mnist" and card["class_names"] == DIGITS


def test_the_data_line_gives_the_slice_taken(tiny_config_file, caplog):
    import logging

    from cnn_mnist.training.pipeline import train

    config = load_config(
        tiny_config_file,
        sets=[
            "tensorboard.enabled=false",
            "training.epochs=1",
            "data.limit_train=100",
            "data.limit_test=50",
        ],
    )
    logger = logging.getLogger("cnn_mnist")  # caplog's own handler: the CLI stops propagation
    logger.addHandler(caplog.handler)
    try:
        with caplog.at_level(logging.INFO, logger="cnn_mnist"):
            result = train(config, progress=0)
    finally:
        logger.removeHandler(caplog.handler)
    line = next(r.getMessage() for r in caplog.records if r.getMessage().startswith("Data: "))
    total = json.loads(result.record_path.read_text())["data"]
    assert (total["num_train"], total["num_test"]) == (100, 50)
    assert line.startswith("Data: 100 of 512 training and 50 of 128 test images from ")
