"""The bad-input battery: every user mistake gives a short message naming the problem, a
non-zero exit, no traceback, and leaves the earlier model, logs and results as they were."""

import gzip
import hashlib
from pathlib import Path

import keras
import numpy as np
import pytest
import yaml
from click.testing import CliRunner
from PIL import Image

from cnn_mnist.cli import cli
from cnn_mnist.stages.data import IDX_FILES
from tests.conftest import TINY_LAYERS, synthetic_digits, write_idx


def _idx_folder(folder: Path) -> Path:
    folder.mkdir(parents=True)
    arrays = [*synthetic_digits(256, seed=1), *synthetic_digits(64, seed=2)]
    for stem, array in zip(IDX_FILES.values(), arrays):
        write_idx(folder / f"{stem}.gz", array)
    return folder


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """A folder where `cnn train` has already run once: a good model, logs, results."""
    root = tmp_path_factory.mktemp("workspace")
    data = _idx_folder(root / "data")
    config = {
        "model": {"layers": TINY_LAYERS},
        "training": {"epochs": 1, "seed": 1},
        "data": {"path": str(data)},
    }
    (root / "good.yaml").write_text(yaml.safe_dump(config))
    import os

    cwd = os.getcwd()
    os.chdir(root)
    try:
        result = CliRunner().invoke(cli, ["train", "--config", "good.yaml", "--quiet"])
    finally:
        os.chdir(cwd)
    assert result.exit_code == 0, result.output
    return root


def _snapshot(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for folder in ("models", "logs")
        for p in sorted((root / folder).rglob("*"))
        if p.is_file()
    }


def _bad_data(kind: str, folder: Path) -> Path:
    data = _idx_folder(folder / "baddata")
    images = data / "train-images-idx3-ubyte.gz"
    raw = gzip.decompress(images.read_bytes())
    if kind == "missing_file":
        (data / "t10k-labels-idx1-ubyte.gz").unlink()
    elif kind == "truncated":
        images.write_bytes(gzip.compress(raw[:-500]))
    elif kind == "magic":
        images.write_bytes(gzip.compress(b"\x00\x00\x09\x03" + raw[4:]))
    elif kind == "labels":
        labels = synthetic_digits(256, seed=1)[1]
        labels[0] = 12
        write_idx(data / "train-labels-idx1-ubyte.gz", labels)
    elif kind == "counts":
        write_idx(data / "t10k-labels-idx1-ubyte.gz", synthetic_digits(63, seed=2)[1])
    elif kind == "not_gzip":
        images.write_bytes(b"plain text, not gzip")
    return data


def _file(folder: Path, kind: str) -> Path:
    if kind == "empty.h5":
        (folder / kind).write_bytes(b"")
    elif kind == "text.h5":
        (folder / kind).write_text("not a model")
    elif kind == "cut.h5":
        good = (folder / "models" / "digits_recognition_cnn.h5").read_bytes()
        (folder / kind).write_bytes(good[: len(good) // 3])
    elif kind == "rgb.h5":
        keras.Sequential(
            [keras.Input((32, 32, 3)), keras.layers.Flatten(), keras.layers.Dense(10)]
        ).save(folder / kind)
    elif kind == "dir.h5":
        (folder / kind).mkdir()
    elif kind == "garbage.npz":
        (folder / kind).write_bytes(b"PK not really")
    elif kind == "partial.npz":
        np.savez(folder / kind, x_train=np.zeros((2, 28, 28), np.uint8))
    elif kind == "notimage.png":
        (folder / kind).write_text("hello")
    elif kind == "blank.png":
        Image.new("L", (64, 64), 250).save(folder / kind)
    elif kind == "a_file":
        (folder / kind).write_text("a file where a folder should be")
    return folder / kind


BAD_CONFIGS = {
    "misspelt section": "trainig: {epochs: 1}",
    "unknown layer type": "model: {layers: [{type: Conv3D, filters: 2}]}",
    "string for integer": "training: {batch_size: '128'}",
    "kernel larger than input": "model: {layers: [{type: Conv2D, filters: 2, kernel_size: 40}, "
    "{type: Flatten}, {type: Dense, units: 10}]}",
    "dropout 1.5": "model: {layers: [{type: Flatten}, {type: Dropout, rate: 1.5}, "
    "{type: Dense, units: 10}]}",
    "broken yaml": "training: [epochs",
    "negative epochs": "training: {epochs: -1}",
    "not a mapping": "- a\n- b",
    "unknown layer key": "model: {layers: [{type: Dense, units: 10, activaton: relu}]}",
    "not ten outputs": "model: {layers: [{type: Flatten}, {type: Dense, units: 9}]}",
    "monitor without validation": "training: {validation: none, early_stopping: {}}",
    "bad model suffix": "output: {model_path: models/m.pt}",
}
EXPECTED_CONFIG = {
    "misspelt section": "trainig: unknown key",
    "unknown layer type": "unknown layer type 'Conv3D'",
    "string for integer": "training.batch_size",
    "kernel larger than input": "model.layers[0] (Conv2D)",
    "dropout 1.5": "model.layers[1].rate",
    "broken yaml": "broken YAML",
    "negative epochs": "training.epochs",
    "not a mapping": "expected a mapping of sections",
    "unknown layer key": "model.layers[0].activaton: unknown key",
    "not ten outputs": "must end in 10 outputs",
    "monitor without validation": "needs validation data",
    "bad model suffix": "output.model_path",
}

# (case id, args builder(root, scratch) -> argv, exit code, expected text)
CASES = [
    *[
        (
            f"config: {name}",
            lambda r, s, n=name: ["train", "--config", str(_write(s, BAD_CONFIGS[n]))],
            2,
            EXPECTED_CONFIG[name],
        )
        for name in BAD_CONFIGS
    ],
    (
        "config: missing file",
        lambda r, s: ["train", "--config", "nope.yaml"],
        2,
        "config file not found",
    ),
    (
        "set: no equals sign",
        lambda r, s: ["train", "--set", "training.epochs"],
        2,
        "KEY.PATH=VALUE",
    ),
    (
        "set: index out of range",
        lambda r, s: ["train", "--set", "model.layers[20].rate=0.1"],
        2,
        "out of range",
    ),
    (
        "set: wrong type",
        lambda r, s: ["train", "--set", "training.epochs=many"],
        2,
        "training.epochs",
    ),
    (
        "set: unknown key",
        lambda r, s: ["train", "--set", "training.epoch=2"],
        2,
        "training.epoch: unknown key",
    ),
    (
        "set: bad index",
        lambda r, s: ["train", "--set", "model.layers[x].rate=0.1"],
        2,
        "bad list index",
    ),
    ("option: epochs 0", lambda r, s: ["train", "--epochs", "0"], 2, "--epochs"),
    ("option: batch size text", lambda r, s: ["train", "--batch-size", "big"], 2, "--batch-size"),
    (
        "option: negative learning rate",
        lambda r, s: ["train", "--learning-rate", "-0.1"],
        2,
        "--learning-rate",
    ),
    (
        "option: resume unknown run",
        lambda r, s: ["train", "--resume", "20990101-000000-ffff"],
        2,
        "no such run",
    ),
    (
        "option: resume with overrides",
        lambda r, s: ["train", "--resume", "--seed", "3"],
        2,
        "drop --seed",
    ),
    (
        "option: resume with nothing unfinished",
        lambda r, s: ["train", "--resume"],
        2,
        "no unfinished run",
    ),
    ("predict: nothing", lambda r, s: ["predict"], 2, "nothing to predict"),
    (
        "predict: index too large",
        lambda r, s: ["predict", "--index", "64", "--data", str(r / "data")],
        2,
        "valid indices are 0 to 63",
    ),
    (
        "predict: index negative",
        lambda r, s: ["predict", "--index", "-1", "--data", str(r / "data")],
        2,
        "valid indices are 0 to 63",
    ),
    ("predict: index text", lambda r, s: ["predict", "--index", "ten"], 2, "not a number"),
    ("predict: empty range", lambda r, s: ["predict", "--index", "5:2"], 2, "STOP > START"),
    *[
        (
            f"data: {kind}",
            lambda r, s, k=kind: ["train", "--config", "good.yaml", "--data", str(_bad_data(k, s))],
            1,
            expected,
        )
        for kind, expected in [
            ("missing_file", "t10k-labels-idx1-ubyte"),
            ("truncated", "truncated or corrupt"),
            ("magic", "magic number 0x00000903"),
            ("labels", "labels from 0 to 12"),
            ("counts", "63 labels for 64 images"),
            ("not_gzip", "train-images-idx3-ubyte.gz: cannot read"),
        ]
    ],
    (
        "data: no such folder",
        lambda r, s: ["train", "--config", "good.yaml", "--data", str(s / "nowhere")],
        1,
        "no such file or folder",
    ),
    (
        "data: garbage npz",
        lambda r, s: ["train", "--config", "good.yaml", "--data", str(_file(s, "garbage.npz"))],
        1,
        "not a readable .npz",
    ),
    (
        "data: npz missing arrays",
        lambda r, s: ["train", "--config", "good.yaml", "--data", str(_file(s, "partial.npz"))],
        1,
        "missing arrays",
    ),
    (
        "model: missing",
        lambda r, s: ["predict", "-i", "1", "--data", str(r / "data"), "-m", str(s / "none.h5")],
        1,
        "model file not found",
    ),
    *[
        (
            f"model: {kind}",
            lambda r, s, k=kind: [
                "evaluate",
                "--data",
                str(r / "data"),
                "-m",
                str(_file(s if k != "cut.h5" else r, k)),
                "--out",
                str(s / "ev"),
            ],
            1,
            expected,
        )
        for kind, expected in [
            ("empty.h5", "the file is empty"),
            ("text.h5", "not a readable Keras model"),
            ("cut.h5", "truncated or corrupt"),
            ("rgb.h5", "expected (28, 28, 1)"),
            ("dir.h5", "expected a Keras model file"),
        ]
    ],
    (
        "image: not an image",
        lambda r, s: ["predict", "--image", str(_file(s, "notimage.png"))],
        1,
        "not an image",
    ),
    (
        "image: blank",
        lambda r, s: ["predict", "--image", str(_file(s, "blank.png"))],
        1,
        "no digit found",
    ),
    (
        "image: missing",
        lambda r, s: ["predict", "--image", str(s / "none.png")],
        1,
        "no such image file",
    ),
    (
        "output: model path under a file",
        lambda r, s: [
            "train",
            "--config",
            "good.yaml",
            "--model-path",
            str(_file(s, "a_file") / "m.h5"),
        ],
        1,
        "cannot write the model",
    ),
    (
        "output: evaluate out under a file",
        lambda r, s: [
            "evaluate",
            "--data",
            str(r / "data"),
            "--out",
            str(_file(s, "a_file") / "ev"),
        ],
        1,
        "cannot write the evaluation results",
    ),
    (
        "output: tensorboard without runs",
        lambda r, s: ["tensorboard", "--logdir", str(s / "none")],
        2,
        "run `cnn train` first",
    ),
]


def _write(folder: Path, text: str) -> Path:
    path = folder / "bad.yaml"
    path.write_text(text)
    return path


def test_battery_is_large_enough():
    assert len(CASES) >= 30


@pytest.mark.parametrize("name, build, code, expected", CASES, ids=[c[0] for c in CASES])
def test_bad_input(workspace, tmp_path, monkeypatch, name, build, code, expected):
    monkeypatch.chdir(workspace)
    before = _snapshot(workspace)
    args = build(workspace, tmp_path)
    result = CliRunner().invoke(cli, args)
    (workspace / "cut.h5").unlink(missing_ok=True)
    assert result.exit_code == code, (args, result.output)
    assert expected in result.output, result.output
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert len(result.output.strip().splitlines()) <= 4, result.output
    assert _snapshot(workspace) == before  # the earlier model, logs and results are untouched
