"""`cnn summary`: the model's layers, output shapes and parameter counts, without training."""

from __future__ import annotations

import click

from cnn_mnist.cli.options import config_options
from cnn_mnist.cli.shell import command


@command()
@config_options
def summary(config_path, sets, quiet):
    """Show the layers, output shapes and parameter counts, without training."""
    from cnn_mnist.config.load import load_config
    from cnn_mnist.config.shapes import format_summary, infer

    config = load_config(config_path, sets=sets)
    rows, _ = infer(config.model)
    click.echo(f"Model {config.model.name!r} from {config_path or 'the default config'}\n")
    click.echo(format_summary(rows, input_shape=config.model.input_shape))
    if not quiet:
        click.echo(
            "\nConv2D: (kernel height x width x input depth + 1 bias) x kernels. "
            "Dense: (inputs + 1 bias) x units.\n"
            "Output size = (W - K + 2P) / S + 1 for input W, kernel K, padding P, stride S."
        )
