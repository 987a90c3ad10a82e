import json
import subprocess
import sys

import pytest
from click.testing import CliRunner

from cnn_mnist.cli import cli


@pytest.fixture
def runner():
    return CliRunner()


@pytest.mark.parametrize(
    "args",
    [
        ["--help"],
        ["train", "--help"],
        ["summary", "--help"],
        ["tensorboard", "--help"],
        ["runs", "--help"],
        ["runs", "compare", "--help"],
    ],
)
def test_help_does_not_import_tensorflow(args):
    code = (
        "import sys; from cnn_mnist.cli import main; sys.argv = ['cnn'] + %r\n"
        "try:\n    main()\nexcept SystemExit as e:\n    assert e.code in (0, None), e.code\n"
        "heavy = [m for m in ('tensorflow', 'keras', 'matplotlib') if m in sys.modules]\n"
        "assert not heavy, heavy" % args
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "Usage: cnn" in result.stdout


def test_summary_shows_lecture_model(runner):
    result = runner.invoke(cli, ["summary"])
    assert result.exit_code == 0, result.output
    for expected in ("26x26x32", "24x24x64", "12x12x64", "9216", "1,199,882", "(3x3x1 + 1) x 32"):
        assert expected in result.output


def test_summary_with_set(runner):
    result = runner.invoke(cli, ["summary", "--set", "model.layers[0].filters=16"])
    assert result.exit_code == 0 and "(3x3x1 + 1) x 16" in result.output


BAD_CONFIGS = {
    "misspelt section": ("trainig:\n  epochs: 1\n", "trainig: unknown key"),
    "unknown layer": ("model:\n  layers:\n    - {type: Conv3D}\n", "unknown layer type 'Conv3D'"),
    "string for int": ("training:\n  batch_size: '128'\n", "training.batch_size"),
    "kernel too large": (
        "model:\n  layers:\n    - {type: Conv2D, filters: 2, kernel_size: 30}\n"
        "    - {type: Flatten}\n    - {type: Dense, units: 10}\n",
        "model.layers[0] (Conv2D)",
    ),
    "dropout 1.5": (
        "model:\n  layers:\n    - {type: Flatten}\n    - {type: Dropout, rate: 1.5}\n"
        "    - {type: Dense, units: 10}\n",
        "model.layers[1].rate",
    ),
    "broken yaml": ("training: [epochs\n", "broken YAML"),
    "negative epochs": ("training:\n  epochs: -1\n", "training.epochs"),
}


@pytest.mark.parametrize("name", sorted(BAD_CONFIGS))
@pytest.mark.parametrize("command", ["train", "summary"])
def test_bad_config_is_a_usage_error(runner, tmp_path, name, command):
    text, expected = BAD_CONFIGS[name]
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    result = runner.invoke(cli, [command, "--config", str(path)])
    assert result.exit_code == 2, result.output
    assert expected in result.output and "Traceback" not in result.output
    assert result.output.startswith("error: ")
    assert not (tmp_path / "logs").exists()


@pytest.mark.parametrize(
    "args, expected",
    [
        (["--epochs", "0"], "Invalid value for '--epochs'"),
        (["--batch-size", "x"], "Invalid value for '--batch-size'"),
        (["--learning-rate", "-1"], "Invalid value for '--learning-rate'"),
        (["--set", "training.epochs"], "expected KEY.PATH=VALUE"),
        (["--set", "training.epochs=two"], "training.epochs"),
        (["--config", "/nonexistent.yaml"], "config file not found"),
        (["--model-path", "model.pt"], "output.model_path"),
    ],
)
def test_bad_options(runner, args, expected):
    result = runner.invoke(cli, ["train", *args])
    assert result.exit_code == 2, result.output
    assert expected in result.output and "Traceback" not in result.output


def test_missing_data_folder_is_clear(runner, tmp_path, tiny_config_file):
    result = runner.invoke(
        cli, ["train", "--config", str(tiny_config_file), "--data", str(tmp_path / "nowhere")]
    )
    assert result.exit_code == 1
    assert "no such file or folder" in result.output and "CNN_MNIST_DATA" in result.output
    assert "Traceback" not in result.output
    assert not list((tmp_path / "logs").glob("*"))  # no empty run left behind


def test_train_through_cli(runner, tmp_path, tiny_config_file):
    result = runner.invoke(
        cli, ["train", "--config", str(tiny_config_file), "--epochs", "1", "--seed", "3"]
    )
    assert result.exit_code == 0, result.output
    assert "Test loss" in result.output and "Confusion matrix" in result.output
    assert "Model saved to" in result.output
    records = list((tmp_path / "logs").glob("*/run.json"))
    assert len(records) == 1
    record = json.loads(records[0].read_text())
    assert record["config"]["training"]["epochs"] == 1 and record["seed"] == 3
    assert (tmp_path / "models" / "tiny.h5").is_file()


def test_quiet_train_prints_only_results(runner, tiny_config_file):
    result = runner.invoke(cli, ["train", "--config", str(tiny_config_file), "--quiet"])
    assert result.exit_code == 0, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 2 and lines[0].startswith("Test loss") and "Model saved" in lines[1]


def test_tensorboard_without_runs(runner, tmp_path):
    result = runner.invoke(cli, ["tensorboard", "--logdir", str(tmp_path / "none")])
    assert result.exit_code == 2 and "run `cnn train` first" in result.output


def test_version(runner):
    result = runner.invoke(cli, ["--version"])
    assert result.exit_code == 0 and "cnn, version" in result.output


def test_the_shell_gives_every_command_its_options_and_errors_once():
    """A command made in the shell (a Shell group's `.command()`, or `shell.command()`) gets
    --verbose/--quiet, logging and the error handling, once; `shell=False` opts out: a plain
    click command, its errors its own."""
    import click

    from cnn_mnist.cli.shell import Shell, command
    from cnn_mnist.core.errors import ConfigError

    @click.group(cls=Shell)
    def group():
        pass

    @group.command()
    @click.option("--fail", is_flag=True)
    def new(fail, quiet):
        if fail:
            raise ConfigError("what was wrong; what to do")
        click.echo(f"quiet={quiet}")

    @command()
    def alone(verbose, quiet):
        click.echo(f"verbose={verbose} quiet={quiet}")

    @group.command(shell=False)
    def plain():
        raise ConfigError("not the shell's")

    group.add_command(alone)
    runner = CliRunner()
    assert runner.invoke(group, ["new", "-q"]).output == "quiet=True\n"
    failed = runner.invoke(group, ["new", "--fail"])
    assert failed.exit_code == 2 and failed.output == "error: what was wrong; what to do\n"
    assert runner.invoke(group, ["alone", "-v"]).output == "verbose=True quiet=False\n"
    for name in ("new", "alone"):
        assert runner.invoke(group, [name, "--help"]).output.count("--verbose") == 1
    assert "--verbose" not in runner.invoke(group, ["plain", "--help"]).output
    assert isinstance(runner.invoke(group, ["plain"]).exception, ConfigError)


def _every_command(group, path=("cnn",)):
    import click

    ctx = click.Context(group)
    for name in group.list_commands(ctx):
        command = group.get_command(ctx, name)
        yield (*path, name), command
        if isinstance(command, click.Group):
            yield from _every_command(command, (*path, name))


def test_every_command_is_in_the_shell_once_with_its_options_last():
    from cnn_mnist.cli.shell import ShellCommand

    found = dict(_every_command(cli))
    assert (
        len(found) == 17 and ("cnn", "runs", "rm") in found and ("cnn", "config", "show") in found
    )
    for path, command in found.items():
        names = [p.name for p in command.params]
        assert isinstance(command, ShellCommand), path
        assert names.count("verbose") == names.count("quiet") == 1, path
        assert names[-2:] == ["verbose", "quiet"], path


def test_a_command_imports_only_its_own_module():
    code = (
        "import sys; from cnn_mnist.cli import main; sys.argv = ['cnn', 'summary', '-q']\n"
        "try:\n    main()\nexcept SystemExit as e:\n    assert e.code in (0, None), e.code\n"
        "loaded = sorted(m for m in sys.modules if m.startswith('cnn_mnist.cli.'))\n"
        "assert loaded == ['cnn_mnist.cli.options', 'cnn_mnist.cli.shell', "
        "'cnn_mnist.cli.summary'], loaded"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
