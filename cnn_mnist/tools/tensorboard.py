"""`cnn tensorboard`'s library: TensorBoard on the training runs, in a process of its own."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from cnn_mnist.core.errors import CnnError, ConfigError

STOPPED = (0, -2, 130)  # TensorBoard's exit codes when it ends well or is stopped with Ctrl-C


def check_logdir(logdir: str | Path) -> None:
    """A folder of runs to show, or an error saying how to make one."""
    if not Path(logdir).is_dir():
        raise ConfigError(f"no runs in {logdir}/ yet: run `cnn train` first, or pass --logdir")


def address(host: str, port: int) -> str:
    """Where TensorBoard answers: http://localhost:6006/."""
    return f"http://{host}:{port}/"


def command_line(logdir: str | Path, port: int, host: str) -> list[str]:
    """TensorBoard run by this Python, as its own process."""
    args = ["--logdir", str(logdir), "--port", str(port), "--host", host]
    return [sys.executable, "-m", "tensorboard.main", *args]


def run_tensorboard(logdir: str | Path, port: int, host: str, *, verbose: bool = False) -> int:
    """TensorBoard until it is stopped (Ctrl-C), quiet unless `verbose`; its exit code, or an
    error where it failed (its port in use, most often)."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL=os.environ.get("TF_CPP_MIN_LOG_LEVEL", "3"))
    stderr = None if verbose else subprocess.DEVNULL
    try:
        code = subprocess.call(command_line(logdir, port, host), env=env, stderr=stderr)
    except KeyboardInterrupt:
        code = 0
    if code not in STOPPED:
        raise CnnError(
            f"TensorBoard exited with code {code} (port {port} in use? try --port); "
            "run with --verbose to see its output"
        )
    return code
