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


# SIGTERM lands while TensorFlow's C++ stack module is being imported: the import finishes, and
# the signal is raised after it, as the interruption it is (in CI, one landing inside the C++
# module's initialisation came out as "ImportError: initialization failed" and a traceback).
SIGNAL_IN_IMPORT = """
import os, signal, sys
from cnn_mnist.cli.shell import stop_on_sigterm
from cnn_mnist.core.runtime import import_tensorflow

TARGET = "tensorflow.python.util._tf_stack"
class SignalOnImport:
    fired = False
    def find_spec(self, name, path=None, target=None):
        if name == TARGET and not SignalOnImport.fired:
            SignalOnImport.fired = True
            os.kill(os.getpid(), signal.SIGTERM)
        return None

stop_on_sigterm()
sys.meta_path.insert(0, SignalOnImport())
try:
    import_tensorflow(%s)
    print("not interrupted")
except KeyboardInterrupt:
    print("interrupted; fired", SignalOnImport.fired, "imported", TARGET in sys.modules,
          "keras", "keras" in sys.modules)
"""


@pytest.mark.slow
@pytest.mark.parametrize("verbose", [False, True])
def test_a_signal_during_the_import_is_raised_after_it(verbose):
    done = subprocess.run(
        [sys.executable, "-c", SIGNAL_IN_IMPORT % verbose], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "interrupted; fired True imported True keras True", done.stderr
