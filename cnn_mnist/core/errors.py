"""Errors a user can cause and fix. The CLI prints them as one or two lines, never a traceback."""


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
