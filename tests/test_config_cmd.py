"""`cnn config show` and `cnn config schema`, and the JSON Schema file shipped beside the configs
that editors check them with."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
import yaml
from click.testing import CliRunner

from cnn_mnist.cli import cli
from cnn_mnist.config.load import (
    SCHEMA_FILE,
    json_schema,
    json_schema_text,
    load_config,
    read_yaml,
    schema_file,
    shipped_configs,
)
from cnn_mnist.config.schema import Config

REPO = Path(__file__).resolve().parent.parent
MODELINE = f"# yaml-language-server: $schema={SCHEMA_FILE}"


@pytest.fixture(scope="module")
def validator():
    schema = json_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def test_show_prints_the_resolved_config_with_every_default(tmp_path):
    result = CliRunner().invoke(
        cli, ["config", "show", "--config", "speedrun", "--set", "training.epochs=2"]
    )
    assert result.exit_code == 0, result.output
    shown = yaml.safe_load(result.output)
    assert shown["training"]["epochs"] == 2  # --set
    from cnn_mnist.config.load import resolve_config_path

    in_file = yaml.safe_load(resolve_config_path("speedrun").read_text())
    assert shown["compile"]["learning_rate"] == in_file["compile"]["learning_rate"]  # the file
    assert shown["training"]["collective_timeout"] == 120.0  # a default the file leaves out
    assert "- {type: Flatten}" in result.output  # a layer a line, as in the shipped configs
    # What it prints is a config: read back, it is the same config.
    path = tmp_path / "shown.yaml"
    path.write_text(result.output)
    assert load_config(path) == load_config("speedrun", sets=["training.epochs=2"])


def test_show_reports_a_bad_key_in_one_line():
    result = CliRunner().invoke(cli, ["config", "show", "--set", "training.epoch=2"])
    assert result.exit_code == 2
    assert "training.epoch: unknown key (did you mean 'epochs'?)" in result.output
    assert "Traceback" not in result.output


def test_schema_prints_the_json_schema_with_descriptions():
    result = CliRunner().invoke(cli, ["config", "schema"])
    assert result.exit_code == 0
    schema = json.loads(result.output)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    epochs = schema["$defs"]["TrainingConfig"]["properties"]["epochs"]
    assert epochs["default"] == 1 and epochs["minimum"] == 1
    assert (
        epochs["description"]
        == Config.model_fields["training"].annotation.model_fields["epochs"].description
    )


def test_shipped_schema_file_is_up_to_date():
    assert schema_file().read_text(encoding="utf-8") == json_schema_text(), (
        f"{schema_file()} is out of date: run `cnn config schema > {schema_file()}`"
    )
    # configs/ links to the shipped files, the schema too, so the modeline works from there.
    assert (REPO / "configs" / SCHEMA_FILE).read_text(encoding="utf-8") == json_schema_text()


@pytest.mark.parametrize("name", shipped_configs())
def test_shipped_config_names_the_schema_and_validates(name, validator):
    path = schema_file().parent / f"{name}.yaml"
    assert path.read_text(encoding="utf-8").splitlines()[0] == MODELINE
    errors = [error.message for error in validator.iter_errors(read_yaml(path))]
    assert not errors


@pytest.mark.parametrize(
    "change, unexpected",
    [
        (lambda raw: raw["training"].update(epoch=2), "'epoch' was unexpected"),
        (lambda raw: raw.update(trainig={}), "'trainig' was unexpected"),
    ],
)
def test_a_misspelt_key_fails_the_json_schema(change, unexpected, validator):
    raw = read_yaml(schema_file().parent / "default.yaml")
    change(raw)
    messages = [error.message for error in validator.iter_errors(raw)]
    assert any(unexpected in message for message in messages), messages


def test_a_misspelt_layer_argument_and_a_wrong_type_fail_the_json_schema(validator):
    raw = read_yaml(schema_file().parent / "default.yaml")
    raw["model"]["layers"][0]["filter"] = 16
    assert not validator.is_valid(raw)
    raw = read_yaml(schema_file().parent / "default.yaml")
    raw["training"]["batch_size"] = "128"
    assert not validator.is_valid(raw)
    raw["training"]["batch_size"] = 128
    raw["model"]["layers"][0]["kernel_size"] = 5  # 5 or [5, 5], as the schema takes it
    assert validator.is_valid(raw)


@pytest.mark.parametrize("args", [["config", "show"], ["config", "schema"]])
def test_config_commands_do_not_import_tensorflow(args):
    code = (
        "import sys; from cnn_mnist.cli import main; sys.argv = ['cnn'] + %r\n"
        "try:\n    main()\nexcept SystemExit as e:\n    assert e.code in (0, None), e.code\n"
        "heavy = [m for m in ('tensorflow', 'keras', 'matplotlib') if m in sys.modules]\n"
        "assert not heavy, heavy" % args
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip()


@pytest.mark.parametrize(
    "shell, marker",
    [("bash", "complete -o nosort -F"), ("zsh", "compdef"), ("fish", "complete --no-files")],
)
def test_shell_completion_scripts(shell, marker):
    """Click's completion, as the docs tell a user to install it."""
    import os

    env = dict(os.environ, _CNN_COMPLETE=f"{shell}_source")
    result = subprocess.run(
        [sys.executable, "-m", "cnn_mnist"], env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert marker in result.stdout


def test_bash_completion_completes_commands_and_options():
    import os

    def complete(words: str) -> str:
        env = dict(
            os.environ,
            _CNN_COMPLETE="bash_complete",
            COMP_WORDS=words,
            COMP_CWORD=str(len(words.split()) - (0 if words.endswith(" ") else 1)),
        )
        result = subprocess.run(
            [sys.executable, "-m", "cnn_mnist"], env=env, capture_output=True, text=True
        )
        assert result.returncode == 0, result.stderr
        return result.stdout

    assert "plain,config" in complete("cnn con")
    assert "plain,--batch-size" in complete("cnn train --bat")
