"""Writing files so that a failure never leaves a half-written file where a good one was."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterator

from cnn_mnist.core.errors import OutputError


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside `path` (same suffix); rename it over `path` on success.

    The suffix is kept because Keras picks the format (.h5 or .keras) from it.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(
        prefix=f".{path.stem}.", suffix=f".tmp{path.suffix}", dir=path.parent
    )
    os.close(fd)
    tmp_path = Path(tmp)
    os.chmod(tmp_path, 0o666 & ~_umask())  # mkstemp makes 0600; files should read like any other
    try:
        yield tmp_path
        if not tmp_path.exists() or tmp_path.stat().st_size == 0:
            raise OSError(f"nothing was written to {path}")
        os.replace(tmp_path, path)
    finally:
        tmp_path.unlink(missing_ok=True)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def sha256(path: str | Path) -> str:
    import hashlib

    digest = hashlib.sha256()
    with Path(path).open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def write_bytes(path: str | Path, data: bytes) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_text(path: str | Path, text: str) -> Path:
    return write_bytes(path, text.encode("utf-8"))


def write_json(path: str | Path, data: Any) -> Path:
    return write_text(path, json.dumps(data, indent=2, sort_keys=False) + "\n")


def ensure_writable_dir(folder: str | Path, what: str) -> Path:
    """Create `folder` if needed and check a file can be written there, before any training."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".write-test-"):
            pass
    except (OSError, FileExistsError) as exc:
        reason = exc.strerror or type(exc).__name__
        raise OutputError(
            f"cannot write the {what} to {folder}/ ({reason}); "
            f"choose another path or fix its permissions"
        ) from None
    return folder


def write_error(exc: BaseException, path: str | Path | None, what: str) -> OutputError:
    """An OSError (or h5py's, which says less) while writing `what` to `path`, for the user:
    what was being written, where, and why (a full disk above all)."""
    text = str(exc)
    if (
        getattr(exc, "errno", None) in (errno.ENOSPC, errno.EDQUOT)
        or "No space left" in text
        or "errno = 28" in text
    ):
        reason = "no space left on the device"
    else:
        reason = getattr(exc, "strerror", None) or (
            text.splitlines()[0][:200] if text else type(exc).__name__
        )
    where = f" to {path}" if path else ""
    return OutputError(f"could not write {what}{where}: {reason}")
