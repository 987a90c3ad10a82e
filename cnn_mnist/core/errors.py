"""Errors a user can cause and fix. The CLI prints them as one or two lines, never a traceback."""

import reprlib


class CnnError(Exception):
    """Base class: `str(error)` is the whole message for the user."""

    exit_code = 1


class ConfigError(CnnError):
    """A config file, `--set` value or option that does not fit the schema."""

    exit_code = 2


class DataError(CnnError):
    """MNIST could not be found, read or validated."""


class ModelFileError(CnnError):
    """A model file that is missing, unreadable or not a digit classifier."""


class OutputError(CnnError):
    """A model, log or results path that cannot be written."""


class ExportError(CnnError):
    """An export that cannot be made, or that does not answer as the Keras model does."""


class ClusterError(CnnError):
    """Distributed training lost a worker, or could not form the cluster in time."""


class WrongDataset(DataError):
    """Files that are a known dataset (found by checksum), but not the one asked for."""

    def __init__(self, message: str, found: str, expected: str, where: str = "") -> None:
        super().__init__(message)
        self.found, self.expected, self.where = found, expected, where


class _Brief(reprlib.Repr):
    """reprlib's bounded repr: a few items of a list or mapping, a few levels deep, the ends of
    a long string; and an integer too long to write out by its number of digits."""

    def __init__(self) -> None:
        super().__init__()
        self.maxlevel, self.maxlist, self.maxtuple, self.maxdict, self.maxset = 3, 6, 6, 4, 6
        self.maxstring, self.maxlong, self.maxother = 60, 40, 60

    def repr_int(self, x: int, level: int) -> str:
        if x.bit_length() > 128:
            return f"an integer of about {int((x.bit_length() - 1) * 0.30103) + 1} digits"
        return super().repr_int(x, level)


_BRIEF = _Brief()


def shown(value: object, limit: int = 80) -> str:
    """A user's value as an error message shows it: its repr, at most `limit` characters, made
    in bounded time however large the value (a config can hold anything, a message is a line)."""
    text = _BRIEF.repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def clipped(text: str, limit: int = 80) -> str:
    """A user's text (a key, a path, a parser's complaint) cut to at most `limit` characters."""
    return text if len(text) <= limit else text[: limit - 3] + "..."
