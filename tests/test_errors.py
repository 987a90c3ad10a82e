"""The user's errors (cnn_mnist/core/errors.py): exit codes, and one message, never a traceback."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from cnn_mnist.cli import shell
from cnn_mnist.core import errors


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
    @shell.command()
    def command():
        raise error("what was wrong; what to do")

    result = CliRunner().invoke(command, [])
    assert result.exit_code == code
    assert result.output == "error: what was wrong; what to do\n"
    assert issubclass(error, errors.CnnError)


def test_anything_else_is_not_hidden():
    @shell.command()
    def command():
        raise ValueError("a bug")

    result = CliRunner().invoke(command, [])
    assert result.exit_code == 1 and isinstance(result.exception, ValueError)


def test_shown_is_short_and_quick_for_any_value():
    import sys
    import time

    assert errors.shown("relu") == "'relu'" and errors.shown(10**23) == "100000000000000000000000"
    start = time.perf_counter()
    huge = [
        "x" * 10**6,
        list(range(10**6)),
        {str(i): [[[[i]]]] for i in range(10**5)},
        [[[[[[[[["deep"]]]]]]]]],
    ]
    limit = sys.get_int_max_str_digits()
    sys.set_int_max_str_digits(0)  # an int that Python would not even write out
    try:
        huge.append(7**100_000)
        texts = [errors.shown(value) for value in huge]
    finally:
        sys.set_int_max_str_digits(limit)
    assert time.perf_counter() - start < 5
    assert all(len(text) <= 80 for text in texts), texts
    assert texts[-1] == "an integer of about 84510 digits"
    assert errors.clipped("k" * 500, 20) == "k" * 17 + "..." and errors.clipped("key") == "key"
