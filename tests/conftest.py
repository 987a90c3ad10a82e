"""Shared fixtures: small synthetic digits made in the test, and the real MNIST copy."""

from __future__ import annotations

import gzip
import os
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest

from cnn_mnist.stages.data import IDX_FILES, Mnist

REPO = Path(__file__).resolve().parent.parent
SHARED_MNIST = REPO.parent / "shared" / "data" / "mnist"


def sigint_as_in_a_terminal() -> None:
    """A child's preexec_fn: Ctrl-C (SIGINT) at its default, as a command typed in a terminal
    has it. A process started in the background by a non-interactive shell (as a CI runner
    may start pytest) inherits SIGINT ignored, and Python then never raises KeyboardInterrupt."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_DFL)


def cnn_process(args, cwd, env: dict, timeout: float = 900):
    """`cnn ARGS` as a user runs it: a real process in `cwd`, with the environment `env`."""
    import subprocess
    import sys

    return subprocess.run(
        [sys.executable, "-m", "cnn_mnist", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def train_in(cwd: Path, args, env: dict):
    """`cnn train ARGS` in `cwd`, which must succeed: (the process, the run's run.json)."""
    import json

    result = cnn_process(["train", *args], cwd, env)
    assert result.returncode == 0, result.stderr[-3000:]
    records = list((cwd / "logs" / "fit").glob("*/run.json"))
    assert len(records) == 1
    return result, json.loads(records[0].read_text())


# A model small enough to train in a second: the same layer kinds as the lecture's.
TINY_LAYERS = [
    {"type": "Conv2D", "filters": 8, "kernel_size": 3, "activation": "relu"},
    {"type": "MaxPooling2D", "pool_size": 2},
    {"type": "Flatten"},
    {"type": "Dense", "units": 10, "activation": "softmax"},
]


def synthetic_digits(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Easy-to-learn 28x28 uint8 "digits": class k is a bright bar in row band k, plus noise."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, n).astype(np.uint8)
    images = rng.integers(0, 40, (n, 28, 28)).astype(np.uint8)
    for i, k in enumerate(labels):
        images[i, 2 + 2 * k : 4 + 2 * k, 4:24] = 255
    return images, labels


def write_idx(path: Path, array: np.ndarray, gz: bool = True) -> Path:
    """Write an IDX file of unsigned bytes (magic 0x0000080N), gzipped if `gz`."""
    header = struct.pack(">I", 0x0800 | array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    raw = header + array.astype(np.uint8).tobytes()
    path.write_bytes(gzip.compress(raw) if gz else raw)
    return path


@pytest.fixture
def tiny_mnist() -> Mnist:
    x_train, y_train = synthetic_digits(512, seed=1)
    x_test, y_test = synthetic_digits(128, seed=2)
    return Mnist(x_train, y_train, x_test, y_test, source="synthetic")


def write_idx_folder(folder: Path, mnist: Mnist) -> Path:
    """The four IDX files (gzipped) of `mnist` in `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    for role, stem in IDX_FILES.items():
        write_idx(folder / f"{stem}.gz", getattr(mnist, role))
    return folder


def tiny_config(folder: Path, data: Path) -> Path:
    """A config for a quick run on the synthetic digits in `data`, writing under `folder`."""
    import yaml

    config = {
        "data": {"path": str(data)},
        "model": {"layers": TINY_LAYERS},
        "training": {"epochs": 2, "batch_size": 32, "seed": 7},
        "tensorboard": {"log_dir": str(folder / "logs"), "update_freq": 4},
        "output": {"model_path": str(folder / "models" / "tiny.h5")},
    }
    path = folder / "tiny.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.fixture
def idx_folder(tmp_path: Path, tiny_mnist: Mnist) -> Path:
    """A folder with the four IDX files (gzipped) holding the synthetic digits."""
    return write_idx_folder(tmp_path / "mnist", tiny_mnist)


@pytest.fixture
def tiny_config_file(tmp_path: Path, idx_folder: Path) -> Path:
    """A config for a quick run on the synthetic digits, writing under tmp_path."""
    return tiny_config(tmp_path, idx_folder)


@pytest.fixture(scope="session")
def real_mnist_path() -> Path:
    """The shared MNIST copy; skipped when absent, but a failure under CI (CI=true)."""
    # Absolute: the end-to-end tests run `cnn` from other folders, and $CNN_MNIST_DATA may be
    # a relative path.
    path = Path(os.environ.get("CNN_MNIST_DATA") or SHARED_MNIST).resolve()
    if not (path / "t10k-labels-idx1-ubyte.gz").exists():
        message = f"real MNIST not found at {path} (set CNN_MNIST_DATA)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)
    return path


DEBIAN_FASHION = Path("/usr/share/datasets/fashion-mnist")  # Debian's dataset-fashion-mnist


@pytest.fixture(scope="session")
def real_fashion_path() -> Path:
    """Fashion-MNIST's four files (Debian's copy); skipped when absent, a failure under CI."""
    path = Path(os.environ.get("CNN_FASHION_DATA") or DEBIAN_FASHION).resolve()
    if not (path / "t10k-labels-idx1-ubyte.gz").exists():
        message = (
            f"Fashion-MNIST not found at {path} (set CNN_FASHION_DATA, or "
            "apt-get install dataset-fashion-mnist)"
        )
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)
    return path


def known_table(mnist: Mnist) -> dict:
    """A datasets.KNOWN entry for `mnist`'s four files: their record counts and content
    checksums, so that data made in a test can stand for a known dataset."""
    import hashlib

    from cnn_mnist.core.datasets import KnownFile
    from cnn_mnist.stages.data import IMAGE_MAGIC, LABEL_MAGIC, to_idx

    table = {}
    for role, stem in IDX_FILES.items():
        array = getattr(mnist, role)
        raw = to_idx(array, IMAGE_MAGIC if role.startswith("x") else LABEL_MAGIC)
        table[stem] = KnownFile(len(array), hashlib.sha256(raw).hexdigest())
    return table


FASHION_NAMES = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
]


def relabelled_model(
    model_path: Path, dest: Path, dataset: str = "fashion_mnist", names: list[str] | None = None
) -> Path:
    """A copy of a model saved by `cnn train`, its card saying it was trained on `dataset`
    (with Fashion-MNIST's class names by default): the weights need not know."""
    import shutil

    from cnn_mnist.stages.card import ModelCard
    from cnn_mnist.stages.handle import card_of
    from cnn_mnist.stages.save import write_card

    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(model_path, dest)
    card = card_of(dest).to_json()
    card.pop("litert_sha256", None)
    card.update(dataset=dataset, class_names=names or FASHION_NAMES)
    write_card(dest, ModelCard.read(card))
    return dest


@pytest.fixture
def tiny_model():
    """A small compiled digit classifier, untrained (TINY_LAYERS)."""
    from cnn_mnist.config.load import validate
    from cnn_mnist.stages.model import build_model, compile_model

    config = validate({"model": {"layers": TINY_LAYERS}})
    return compile_model(build_model(config.model), config.compile)


@pytest.fixture(scope="session", autouse=True)
def _quiet_tensorflow():
    """Import TensorFlow once, quietly, as the CLI does."""
    from cnn_mnist.core.runtime import import_tensorflow

    import_tensorflow(verbose=False)


def paper_picture(
    digit: np.ndarray,
    rng: np.random.Generator,
    scale: float = 6.0,
    paper: float = 220.0,
    margin: float = 2.0,
):
    """A 28x28 MNIST digit as a picture of dark ink on light, noisy paper, off-centre."""
    from PIL import Image

    size = int(28 * scale)
    ink = (
        np.asarray(
            Image.fromarray(255 - digit).resize((size, size), Image.Resampling.BICUBIC), np.float32
        )
        / 255
    )
    width, height = int(size * margin), int(size * max(margin * 0.8, 1.05))
    sheet = np.clip(rng.normal(paper, 6, (height, width)), 0, 255)
    x0, y0 = rng.integers(0, width - size + 1), rng.integers(0, height - size + 1)
    sheet[y0 : y0 + size, x0 : x0 + size] *= ink
    return Image.fromarray(sheet.astype(np.uint8)).convert("RGB")


@pytest.fixture(scope="session")
def tiny_trained(tmp_path_factory):
    """A tiny model trained once by the pipeline on the synthetic digits (the same digits as
    `tiny_mnist` and `idx_folder`): (model path, result). Read it; copy it to change it."""
    from cnn_mnist.config.load import load_config
    from cnn_mnist.training.pipeline import train

    folder = tmp_path_factory.mktemp("tiny-trained")
    x_train, y_train = synthetic_digits(512, seed=1)
    x_test, y_test = synthetic_digits(128, seed=2)
    data = write_idx_folder(folder / "mnist", Mnist(x_train, y_train, x_test, y_test, "synthetic"))
    result = train(load_config(tiny_config(folder, data)), progress=0)
    return result.model_path, result


def write_run_record(
    log_dir: Path,
    run_id: str,
    status: str = "completed",
    accuracy: float | None = 0.98,
    loss: float | None = 0.06,
    source: str = "default",
    changes: dict | None = None,
    f1: float = 0.9,
    **fields,
) -> Path:
    """A run folder as `cnn train` leaves it (run.json, config.yaml, epochs.jsonl,
    confusion_matrix.json, a model file), for `cnn runs` to read. `changes` are key paths set
    in the resolved config of `source`; `fields` go into run.json as they are."""
    import json

    import yaml

    from cnn_mnist.config.load import load_config

    config = load_config(
        None if source == "default" else source, overrides={"training.seed": 42, **(changes or {})}
    ).to_dict()
    folder = log_dir / run_id
    folder.mkdir(parents=True)
    (folder / "config.yaml").write_text(yaml.safe_dump(config))
    epochs = config["training"]["epochs"] if status == "completed" else 1
    history = [
        {
            "epoch": e,
            "loss": 0.2 / (e + 1),
            "accuracy": 0.9 + e / 100,
            "val_loss": 0.1 / (e + 1),
            "val_accuracy": 0.95 + e / 100,
        }
        for e in range(epochs)
    ]
    (folder / "epochs.jsonl").write_text("".join(json.dumps(h) + "\n" for h in history))
    day, clock = run_id.split("-")[:2]
    started = f"{day[:4]}-{day[4:6]}-{day[6:]}T{clock[:2]}:{clock[2:4]}:{clock[4:]}+00:00"
    record = {
        "run_id": run_id,
        "status": status,
        "started_at": started,
        "config_source": source,
        "config": config,
        "seed": 42,
        "accelerator": {"device": "cpu", "dtype_policy": "float32"},
    }
    if status == "completed":
        record.update(
            finished_at=started,
            metrics={
                "test_loss": loss,
                "test_accuracy": accuracy,
                "params": 1199882,
                "epochs_completed": epochs,
                "history": {k: [h[k] for h in history] for k in history[0] if k != "epoch"},
            },
            timings_s={"import": 2.3, "fit": 40.0, "total": 51.5},
        )
        per_class = {
            str(d): {"precision": f1, "recall": f1, "f1": f1 - d / 100, "support": 100}
            for d in range(10)
        }
        (folder / "confusion_matrix.json").write_text(json.dumps({"per_class": per_class}))
        (folder / "model.h5").write_bytes(b"not really a model: " + run_id.encode())
    record.update(fields)
    (folder / "run.json").write_text(json.dumps(record, indent=2))
    return folder


def fit_both_ways(config, model_config, data, tmp_path: Path):
    """The same model trained by Keras's `Model.fit` and by the tf.distribute loop on one
    replica, each from seed 3 into its own run folder: (histories, weights, run folders), each
    a dict by "fit" and "distributed"."""
    import tensorflow as tf

    from cnn_mnist.core.runtime import seed_everything
    from cnn_mnist.stages import fit
    from cnn_mnist.stages.model import build_model, compile_model
    from cnn_mnist.training import distribute

    histories, weights, run_dirs = {}, {}, {}
    for kind in ("fit", "distributed"):
        seed_everything(3)
        run_dir = run_dirs[kind] = tmp_path / kind
        run_dir.mkdir()
        if kind == "fit":
            model = compile_model(build_model(model_config), config.compile)
            histories[kind] = fit.fit(
                model,
                data,
                training=config.training,
                tensorboard=config.tensorboard,
                run_dir=run_dir,
                verbose=0,
            )
        else:
            strategy = tf.distribute.OneDeviceStrategy("/cpu:0")
            with strategy.scope():
                model = compile_model(build_model(model_config), config.compile)
            cluster = distribute.Cluster(strategy, "mirrored", 1)
            histories[kind] = distribute.fit(
                cluster,
                model,
                data,
                training=config.training,
                tensorboard=config.tensorboard,
                loss=config.compile.loss,
                run_dir=run_dir,
                verbose=0,
            )
        weights[kind] = [w.numpy() for w in model.weights]
    return histories, weights, run_dirs


# Models that are not digit classifiers, as others make them: (input shape, outputs, activation).
FOREIGN_KINDS = {
    "wrong_input": ((32, 32, 3), 10, "softmax"),
    "five_outputs": ((28, 28, 1), 5, "softmax"),
    "linear": ((28, 28, 1), 10, None),
    "digits": ((28, 28, 1), 10, "softmax"),  # a digit classifier, untrained, without metadata
}
# Each format a model is saved in: by `model.save` or Keras's own `model.export`.
FOREIGN_FORMATS = {
    "h5": ".h5",
    "keras": ".keras",
    "onnx": ".onnx",
    "litert": ".tflite",
    "saved_model": "_saved_model",
}


def foreign_model(shape, units: int, activation, batch_size: int | None = None):
    """A small Keras model of its own (no `cnn train`): a convolution and a dense layer."""
    import keras

    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input(shape, batch_size=batch_size),
            keras.layers.Conv2D(2, 3),
            keras.layers.Flatten(),
            keras.layers.Dense(units, activation=activation),
        ]
    )
    model(np.zeros((1, *shape), np.float32))  # Keras exports only a model that has been called
    return model


def save_every_way(model, folder: Path, name: str, formats=FOREIGN_FORMATS) -> dict[str, Path]:
    """`model` saved as .h5 and .keras, and exported (Keras's `model.export`, as `cnn export`
    does, without metadata) as .onnx, .tflite and a SavedModel folder: the paths by format."""
    from cnn_mnist.stages.formats import write_export

    paths = {}
    for fmt in formats:
        path = paths[fmt] = folder / f"{name}{FOREIGN_FORMATS[fmt]}"
        if fmt in ("h5", "keras"):
            model.save(path)
        else:
            write_export(model, fmt, "none", path)
    return paths


@pytest.fixture(scope="session")
def foreign_models(tmp_path_factory) -> dict[str, dict[str, Path]]:
    """Each of FOREIGN_KINDS in each of FOREIGN_FORMATS: the paths by kind, then format."""
    folder = tmp_path_factory.mktemp("foreign")
    return {
        kind: save_every_way(foreign_model(*spec), folder, kind)
        for kind, spec in FOREIGN_KINDS.items()
    }


@pytest.fixture
def own_run(tiny_trained, tmp_path):
    """A copy of the tiny model and of its run's record, to export from and add to."""
    model_path, result = tiny_trained
    model = tmp_path / "models" / "tiny.h5"
    model.parent.mkdir()
    shutil.copy(model_path, model)
    logs = tmp_path / "logs"
    shutil.copytree(result.run_dir, logs / result.run_id)
    return model, logs, result
