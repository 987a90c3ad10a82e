"""The `cnn` command: thin click commands over the library, one module a command or group.

`cli` is the group, and `COMMANDS` says where each command is: its module is imported only when
the command runs or `cnn --help` lists it, and holds no heavy import at its top (TensorFlow,
Keras, the pipeline are imported inside the command, under their own names), so `--help` and
argument errors answer at once. Every command's shell (--verbose and --quiet, logging, the
library's errors as one line and an exit code) is added by `shell.ShellCommand`; shared options
are in `options`. A command declares its own options, calls the library with keywords, and
prints what it returns.
"""

from __future__ import annotations

import logging
import os
import sys

import click

from cnn_mnist import __version__
from cnn_mnist.cli.shell import LazyGroup

COMMANDS = {
    "config": "cnn_mnist.cli.config:config_group",
    "evaluate": "cnn_mnist.cli.evaluate:evaluate",
    "export": "cnn_mnist.cli.export:export",
    "inspect": "cnn_mnist.cli.inspection:inspect",
    "predict": "cnn_mnist.cli.predict:predict",
    "runs": "cnn_mnist.cli.runs:runs",
    "serve": "cnn_mnist.cli.serve:serve",
    "summary": "cnn_mnist.cli.summary:summary",
    "sweep": "cnn_mnist.cli.sweep:sweep",
    "tensorboard": "cnn_mnist.cli.tensorboard:tensorboard",
    "train": "cnn_mnist.cli.train:train",
}


@click.group(
    cls=LazyGroup,
    lazy_subcommands=COMMANDS,
    context_settings={"help_option_names": ["-h", "--help"]},
)
@click.version_option(__version__, prog_name="cnn")
def cli() -> None:
    """Train, evaluate, save and use a CNN for handwritten digits (MNIST).

    \b
    Start with:   cnn train          (the lecture's model, 1 epoch)
    then:         cnn predict --index 10
                  cnn tensorboard    (loss, accuracy, histograms, confusion matrix)
    """


def main() -> None:
    """The console script (`cnn`, `python -m cnn_mnist`): the command, then `exit` with its
    code."""
    try:
        cli(prog_name="cnn")
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        if isinstance(exc.code, str):
            click.echo(exc.code, err=True)
    exit_now(code)


def exit_now(code: int) -> None:
    """End the process with `code`: an ordinary exit (sys.exit), but once TensorFlow is loaded
    an immediate one (os._exit), on purpose. TensorFlow's interpreter teardown does nothing for
    us (every file is written and closed when a command returns) and takes most of a second:
    measured for issue 32 with `cnn evaluate` of a tiny model, from the command's return to the
    process's end, 0.02 s this way against 0.86 s with sys.exit (median of 5; the whole command
    4.8 s against 6.1 s, median of 7). So the streams and logging are flushed first; atexit
    handlers and finalizers are skipped, none of which has work left."""
    if "tensorflow" not in sys.modules:
        sys.exit(code)
    sys.stdout.flush()
    sys.stderr.flush()
    logging.shutdown()
    os._exit(code)
