"""The shell around every `cnn` command, added by one wrapper: `ShellCommand`.

A command made with `command()`, `group()` or a group's `.command()` is a `ShellCommand`: its
own options, then -v/--verbose and -q/--quiet; logging set up from them; SIGTERM stopping it as
Ctrl-C does; the library's errors (`CnnError`) as `error: message` and their exit code, Ctrl-C
as `error: interrupted` and 130, never a traceback. Its function gets `verbose` and `quiet`
where it names them among its parameters. `shell=False` opts out, as `with_appcontext=False`
does in flask's `AppGroup.command`: a plain click command, with none of that.

`LazyGroup` is the `cnn` group: it imports a command's module only when the command is run or
listed, so `cnn --help` and `cnn runs` never import the modules that `cnn train` needs.
"""

from __future__ import annotations

import functools
import importlib
import logging
import signal
import sys
from inspect import signature
from typing import NoReturn

import click

from cnn_mnist.core.errors import CnnError

log = logging.getLogger("cnn_mnist")


class _Formatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        message = super().format(record)
        return f"warning: {message}" if record.levelno == logging.WARNING else message


def _setup_logging(verbose: bool, quiet: bool) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_Formatter("%(message)s"))
    log.handlers[:] = [handler]
    log.propagate = False
    log.setLevel(logging.DEBUG if verbose else logging.WARNING if quiet else logging.INFO)


def fail(message: str, code: int) -> NoReturn:
    """End the command with `error: message` and exit code `code`."""
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


def stop_on_sigterm() -> None:
    """SIGTERM stops every command like Ctrl-C: cleanly (training keeps its last finished
    epoch; no temporary file is left)."""

    def handler(signum, frame):
        raise KeyboardInterrupt

    try:
        signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread (embedded use): leave the default
        pass


def _unraisable(unraisable) -> None:
    """An error Python cannot raise (h5py closing a file the full disk cut short, in a
    destructor) is logged for --verbose, not printed as a traceback: the error that matters
    has been raised and said already."""
    log.debug("ignored in %r: %s", unraisable.object, unraisable.exc_value)


def progress(quiet: bool) -> int:
    """Keras's verbose for a command's training: a bar in a terminal, a line per epoch else."""
    return 0 if quiet else (1 if sys.stdout.isatty() else 2)


def _output_options() -> list[click.Parameter]:
    """--verbose and --quiet, new for each command (an option belongs to one command)."""
    return [
        click.Option(
            ["-v", "--verbose"],
            is_flag=True,
            help="Show details, and TensorFlow's own start-up messages.",
        ),
        click.Option(
            ["-q", "--quiet"],
            is_flag=True,
            help="Only results and errors: no progress bar or notes.",
        ),
    ]


def _in_shell(callback):
    """`callback` run in the shell: logging, SIGTERM, and the library's errors as one line."""
    wants = signature(callback).parameters

    @functools.wraps(callback)
    def run(*args, verbose: bool = False, quiet: bool = False, **kwargs):
        _setup_logging(verbose, quiet)
        stop_on_sigterm()  # its temporary files are removed on the way out, as on Ctrl-C
        sys.unraisablehook = _unraisable
        given = {"verbose": verbose, "quiet": quiet}
        kwargs.update({name: value for name, value in given.items() if name in wants})
        try:
            return callback(*args, **kwargs)
        except CnnError as exc:
            fail(str(exc), exc.exit_code)
        except KeyboardInterrupt:
            fail("interrupted", 130)

    return run


class ShellCommand(click.Command):
    """A command in its shell (this module's docstring): the one place it is added. --verbose
    and --quiet follow the command's own options, as --help lists them."""

    def __init__(self, name: str | None, *, callback=None, params=None, **attrs) -> None:
        super().__init__(
            name,
            callback=None if callback is None else _in_shell(callback),
            params=[*(params or []), *_output_options()],
            **attrs,
        )


class Shell(click.Group):
    """A group whose `.command()` makes commands in the shell and whose `.group()` makes groups
    in it (`ShellGroup`); `.command(shell=False)` makes a plain click command."""

    command_class = ShellCommand

    def command(self, *args, shell: bool = True, **kwargs):
        if not shell:
            kwargs.setdefault("cls", click.Command)
        return super().command(*args, **kwargs)

    def group(self, *args, **kwargs):
        kwargs.setdefault("cls", ShellGroup)
        return super().group(*args, **kwargs)


class ShellGroup(ShellCommand, Shell):
    """A group in the shell (`cnn runs`, `cnn config`), with its subcommands in it too."""


def command(name: str | None = None, *, shell: bool = True, **attrs):
    """`click.command`, made a `ShellCommand`; `shell=False`: a plain click command."""
    attrs.setdefault("cls", ShellCommand if shell else click.Command)
    return click.command(name, **attrs)


def group(name: str | None = None, **attrs):
    """`click.group`, made a `ShellGroup`: the group and its subcommands in the shell."""
    return click.command(name, cls=ShellGroup, **attrs)


class LazyGroup(Shell):
    """A group whose commands are imported only when one is run or listed, like hatch's and
    click's documented LazyGroup: `lazy_subcommands` maps each name to "module:attribute"."""

    def __init__(self, *args, lazy_subcommands: dict[str, str] | None = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.lazy_subcommands = dict(lazy_subcommands or {})

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self.lazy_subcommands})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        where = self.lazy_subcommands.get(cmd_name)
        if where is None:
            return super().get_command(ctx, cmd_name)
        module, _, attribute = where.partition(":")
        found = getattr(importlib.import_module(module), attribute)
        if not isinstance(found, click.Command):
            raise TypeError(f"{where} is {found!r}, not a click command")
        return found
