"""Default locations (cnn_mnist/core/paths.py): one place for the schema and the CLI."""

from __future__ import annotations

from click.testing import CliRunner

from cnn_mnist.cli import cli
from cnn_mnist.core import paths


def test_defaults_are_relative_and_shown_in_help():
    for value in (paths.MODEL_PATH, paths.LOG_DIR, paths.EVALUATE_DIR):
        assert not value.startswith("/")
    runner = CliRunner()
    assert paths.MODEL_PATH in runner.invoke(cli, ["predict", "--help"]).output
    assert paths.LOG_DIR in runner.invoke(cli, ["tensorboard", "--help"]).output
    assert paths.EVALUATE_DIR in runner.invoke(cli, ["evaluate", "--help"]).output
    assert paths.MODEL_PATH.endswith(".h5")  # the lecture saves digits_recognition_cnn.h5
