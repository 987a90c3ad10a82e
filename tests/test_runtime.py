"""TensorFlow start-up (cnn_mnist/core/runtime.py): quiet by default, replayed on failure; seeds."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from cnn_mnist.core import runtime


def _write_fd2(text: str) -> None:
    os.write(2, text.encode())  # as C++ code writes: below Python's sys.stderr


def test_stderr_captured_hides_what_is_written_to_fd_2(capfd):
    with runtime.stderr_captured():
        _write_fd2("noise from C++\n")
    _write_fd2("after\n")
    assert capfd.readouterr().err == "after\n"


def test_stderr_captured_replays_it_when_the_block_fails(capfd):
    with pytest.raises(RuntimeError):
        with runtime.stderr_captured():
            _write_fd2("why it failed\n")
            raise RuntimeError("import failed")
    assert "why it failed" in capfd.readouterr().err


def test_one_inter_op_thread():
    tf = runtime.import_tensorflow()
    if "TF_NUM_INTEROP_THREADS" not in os.environ:
        assert tf.config.threading.get_inter_op_parallelism_threads() == 1


def test_same_seed_same_draws():
    import keras
    import numpy as np

    def draws(seed):
        runtime.seed_everything(seed)
        return (
            np.random.rand(3),
            keras.random.uniform((3,), seed=None).numpy(),
            keras.layers.Dense(2).build((None, 4)) or None,
        )

    first, again, other = draws(5)[:2], draws(5)[:2], draws(6)[:2]
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(first[0], other[0])


@pytest.mark.slow
def test_import_is_quiet_unless_verbose():
    code = "from cnn_mnist.core.runtime import import_tensorflow; import_tensorflow(%s)"
    quiet = subprocess.run([sys.executable, "-c", code % "False"], capture_output=True, text=True)
    assert quiet.returncode == 0 and quiet.stderr == "", quiet.stderr
