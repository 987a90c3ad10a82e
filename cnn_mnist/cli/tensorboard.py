"""`cnn tensorboard`: TensorBoard on the training runs, in a process of its own."""

from __future__ import annotations

import click

from cnn_mnist.cli.shell import command
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
    from cnn_mnist.tools.tensorboard import address, check_logdir, run_tensorboard

    check_logdir(logdir)
    click.echo(f"TensorBoard for {logdir} at {address(host, port)}  (Ctrl-C to stop)")
    run_tensorboard(logdir, port, host, verbose=verbose)
