"""`cnn config`: the resolved config, or the JSON Schema that an editor checks configs with."""

from __future__ import annotations

import click

from cnn_mnist.cli.options import config_options
from cnn_mnist.cli.shell import group


@group("config")
def config_group() -> None:
    """Print the resolved config, or the JSON Schema that an editor checks configs with.

    \b
    cnn config show --config speedrun --set training.epochs=2
    cnn config schema > config.schema.json
    """


@config_group.command("show")
@config_options
def config_show(config_path, sets):
    """Print the resolved config as YAML: the file, the --set values and every default."""
    from cnn_mnist.config.load import load_config, to_yaml

    click.echo(to_yaml(load_config(config_path, sets=sets)), nl=False)


@config_group.command("schema")
def config_schema():
    """Print the config's JSON Schema (every key's type, default, choices and description)."""
    from cnn_mnist.config.load import json_schema_text

    click.echo(json_schema_text(), nl=False)
