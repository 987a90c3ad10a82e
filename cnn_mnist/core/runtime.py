"""TensorFlow start-up: quiet by default, everything shown with --verbose; seeds.

TensorFlow prints CUDA probing, CPU-feature and oneDNN notices from C++ before Python logging is
set up, so `TF_CPP_MIN_LOG_LEVEL` alone does not hide them: the import runs with the process's
stderr pointed at a temporary file, which is replayed if the import fails.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
import tempfile
import threading
import warnings

_configured = False


@contextlib.contextmanager
def stderr_captured(replay: bool = True):
    """Send file descriptor 2 to a temporary file; replay it if the block fails and `replay`
    (not if it is interrupted: Ctrl-C or SIGTERM during the import is not TensorFlow's to
    explain)."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):  # no real stderr (embedded interpreters): nothing to hide
        yield
        return
    with tempfile.TemporaryFile(mode="w+b") as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield
        except Exception:
            os.dup2(saved, 2)
            if replay:
                sink.seek(0)
                sys.stderr.write(sink.read().decode(errors="replace"))
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def import_tensorflow(verbose: bool = False):
    """Import TensorFlow and Keras, hiding start-up noise unless `verbose`; returns tf.

    oneDNN's CPU kernels are switched on (TensorFlow leaves them off on CPUs without AVX-512
    VNNI or AMX, where they still train this model about 20% faster); a value the user set in
    TF_ENABLE_ONEDNN_OPTS wins.
    """
    global _configured
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")
    if not verbose:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    # Ctrl-C or SIGTERM while TensorFlow's C++ modules initialise would surface as "ImportError:
    # initialization failed" (pybind11 turns the KeyboardInterrupt into one): held until the
    # import is done, then raised as the interruption it is.
    with signals_deferred():
        if _configured or verbose:
            import keras
            import tensorflow as tf
        else:
            with stderr_captured():
                import keras  # noqa: F401
                import tensorflow as tf

                tf.config.list_physical_devices()  # device probing prints its notices here
    if not _configured:
        _threads(tf)
    if not _configured and not verbose:
        import absl.logging

        # The legacy-HDF5 notice and "compiled metrics have yet to be built" come through absl.
        absl.logging.set_verbosity(absl.logging.ERROR)
        logging.getLogger("tensorflow").setLevel(logging.ERROR)
        warnings.filterwarnings("ignore", module=r"(keras|tensorflow|h5py)(\.|$)")
    _configured = True
    return tf


def _threads(tf) -> None:
    """One inter-op thread: this network's ops run one after another, so a second inter-op
    thread only competes with the intra-op threads that do the work (about 7% per training step
    on 2 cores). TF_NUM_INTEROP_THREADS, if the user set it, wins."""
    if "TF_NUM_INTEROP_THREADS" in os.environ:
        return
    try:
        tf.config.threading.set_inter_op_parallelism_threads(1)
    except RuntimeError:  # TensorFlow was already running in this process
        pass


def seed_everything(seed: int) -> None:
    """Same seed, config and machine give the same metrics."""
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(seed)  # Python, NumPy and backend generators
    tf.config.experimental.enable_op_determinism()


@contextlib.contextmanager
def signals_deferred(signals=(signal.SIGINT, signal.SIGTERM)):
    """The block runs to its end; a signal among `signals` that came meanwhile is then raised
    again, to its own handler. Outside the main thread (no handlers there), nothing is held."""
    previous = {s: signal.getsignal(s) for s in signals}
    if (
        threading.current_thread() is not threading.main_thread() or None in previous.values()
    ):  # None: a handler not set from Python
        yield
        return
    caught: list[int] = []
    for s in signals:
        signal.signal(s, lambda signum, frame: caught.append(signum))
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        if caught:
            signal.raise_signal(caught[0])
