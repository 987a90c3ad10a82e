"""The user's errors (cnn_mnist/core/errors.py): exit codes, and one message, never a traceback."""

from __future__ import annotations

import click
import pytest
from click.testing import CliRunner

from cnn_mnist.core import errors
from cnn_mnist.cli import user_errors


@pytest.mark.parametrize(
    "error, code",
    [
        (errors.ConfigError, 2),
        (errors.DataError, 1),
        (errors.ModelFileError, 1),
        (errors.OutputError, 1),
        (errors.ClusterError, 1),
        (errors.CnnError, 1),
    ],
)
def test_each_error_ends_the_command_with_its_code_and_message(error, code):
    @click.command()
    @user_errors
    def command():
        raise error("what was wrong; what to do")

    result = CliRunner().invoke(command, [])
    assert result.exit_code == code
    assert result.output == "error: what was wrong; what to do\n"
    assert issubclass(error, errors.CnnError)


def test_anything_else_is_not_hidden():
    @click.command()
    @user_errors
    def command():
        raise ValueError("a bug")

    result = CliRunner().invoke(command, [])
    assert result.exit_code == 1 and isinstance(result.exception, ValueError)
