"""`cnn tensorboard`: TensorBoard on the training runs, in a process of its own."""

from __future__ import annotations

import click

from cnn_mnist.cli.shell import command, fail
from cnn_mnist.core import paths


@command()
@click.option(
    "--logdir",
    default=paths.LOG_DIR,
    show_default=True,
    type=click.Path(),
    help="Folder holding the runs.",
)
@click.option("--port", default=6006, show_default=True, type=click.IntRange(1, 65535))
@click.option("--host", default="localhost", show_default=True)
def tensorboard(logdir, port, host, verbose):
    """Start TensorBoard on the training runs and print its address."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    if not Path(logdir).is_dir():
        fail(f"no runs in {logdir}/ yet: run `cnn train` first, or pass --logdir", 2)
    url = f"http://{host}:{port}/"
    click.echo(f"TensorBoard for {logdir} at {url}  (Ctrl-C to stop)")
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL=os.environ.get("TF_CPP_MIN_LOG_LEVEL", "3"))
    args = ["--logdir", str(logdir), "--port", str(port), "--host", host]
    argv = [sys.executable, "-m", "tensorboard.main", *args]
    stderr = None if verbose else subprocess.DEVNULL
    try:
        code = subprocess.call(argv, env=env, stderr=stderr)
    except KeyboardInterrupt:
        code = 0
    if code not in (0, -2, 130):
        fail(
            f"TensorBoard exited with code {code} (port {port} in use? try --port); "
            "run with --verbose to see its output",
            1,
        )
