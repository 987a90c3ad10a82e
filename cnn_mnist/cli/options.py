"""Options that several commands share, each with its help text; a command adds its own."""

from __future__ import annotations

import click

from cnn_mnist.core import paths
from cnn_mnist.core.datasets import DATASETS

MODEL_DATASET = (
    "The test data's dataset [default: the model's]; data of another dataset than "
    "the model's is refused."
)
TEST_DATA = (
    "Test data folder or .npz [default: $CNN_MNIST_DATA, or $CNN_FASHION_DATA for a "
    "Fashion-MNIST model, else download]."
)
ANY_MODEL = "A model saved by `cnn train`, or its export (.tflite, .onnx, SavedModel folder)."


def dataset_option(text: str):
    """--dataset, for the commands that read data; `text` is its help."""
    return click.option("--dataset", type=click.Choice(DATASETS), help=text)


def model_option(text: str = "A model saved by `cnn train`."):
    """-m/--model: a saved model, the stable model path by default; `text` is its help."""
    return click.option(
        "-m",
        "--model",
        "model_path",
        default=paths.MODEL_PATH,
        show_default=True,
        type=click.Path(),
        help=text,
    )


def data_option(text: str = TEST_DATA):
    """--data: where the data is, when not where the dataset's environment variable says."""
    return click.option("--data", "data_path", metavar="PATH", help=text)


def overwrite_option(where: str):
    """--overwrite: replace what is at `where` though cnn-mnist did not write it."""
    return click.option(
        "--overwrite",
        is_flag=True,
        help=f"Replace files at {where} that cnn-mnist did not write.",
    )


def config_options(command):
    """--config and --set, shared by train, sweep, summary and config show."""
    command = click.option(
        "--set",
        "sets",
        multiple=True,
        metavar="KEY.PATH=VALUE",
        help="Override any config value, e.g. --set model.layers[3].rate=0.3 (repeatable).",
    )(command)
    command = click.option(
        "-c",
        "--config",
        "config_path",
        type=click.Path(dir_okay=False),
        help="YAML config file, or the name of a shipped one (default, "
        "speedrun, fashion, handwriting, sweep) [default: the lecture's "
        "model].",
    )(command)
    return command
