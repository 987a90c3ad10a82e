"""Writing files so that a failure never leaves a half-written file where a good one was."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import shutil
import struct
import tempfile
import zlib
from pathlib import Path
from typing import Any, Callable, Iterator

from cnn_mnist.core.errors import OutputError


@contextlib.contextmanager
def atomic_path(
    path: str | Path, before_replace: Callable[[], None] | None = None
) -> Iterator[Path]:
    """Yield a temporary path beside `path` (same suffix); rename it over `path` on success.

    The suffix is kept because Keras picks the format (.h5 or .keras) from it.
    `before_replace` runs just before the rename (a check that what is at `path` now may be
    replaced: a file may have appeared there meanwhile); an error there leaves `path` as it is.
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
        if before_replace is not None:
            before_replace()
        os.replace(tmp_path, path)
    finally:
        tmp_path.unlink(missing_ok=True)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with Path(path).open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_MARK = b"Software\x00cnn-mnist"  # a PNG text chunk: this tool wrote the picture
_MARK_CHUNK = (
    struct.pack(">I", len(_MARK)) + b"tEXt" + _MARK + struct.pack(">I", zlib.crc32(b"tEXt" + _MARK))
)
_IHDR_END = 33  # the signature (8) and the IHDR chunk (25), which must come first


def _stamped(data: bytes) -> bytes:
    """A PNG with the tool's mark after its header (any other bytes as they are)."""
    if not data.startswith(PNG_SIGNATURE) or data[_IHDR_END:].startswith(_MARK_CHUNK):
        return data
    return data[:_IHDR_END] + _MARK_CHUNK + data[_IHDR_END:]


def written_by_us(path: str | Path) -> bool:
    """A picture this tool wrote (its PNGs carry a mark, see `write_bytes`)."""
    try:
        with Path(path).open("rb") as fh:
            head = fh.read(_IHDR_END + len(_MARK_CHUNK))
    except OSError:
        return False
    return head.startswith(PNG_SIGNATURE) and head[_IHDR_END:] == _MARK_CHUNK


def write_bytes(
    path: str | Path, data: bytes, before_replace: Callable[[], None] | None = None
) -> Path:
    """`data` written atomically (a PNG marked as this tool's: `written_by_us`)."""
    with atomic_path(path, before_replace) as tmp:
        tmp.write_bytes(_stamped(data))
    return Path(path)


def write_output(
    path: str | Path,
    data: bytes,
    *,
    what: str,
    option: str,
    overwrite: bool = False,
    ours: Callable[[Path], bool] = written_by_us,
) -> Path:
    """An output the user named (or a file in a folder they named): what is at `path` is
    replaced only if this tool wrote it (`ours`), or with `overwrite` (check_target, again
    just before the rename); a write error is an OutputError that names the cause."""
    check = lambda: check_target(  # noqa: E731
        path, what=what, ours=ours, overwrite=overwrite, option=option
    )
    check()
    try:
        return write_bytes(path, data, before_replace=check)
    except OSError as exc:
        raise write_error(exc, path, f"the {what}", advise=True) from None


def check_place(
    folder: str | Path, what: str, option: str, shown: str | Path | None = None
) -> Path:
    """That `folder` can be made or written into, without making it (an output's place,
    checked before the work, so a refusal later leaves nothing behind)."""
    folder = Path(folder)
    place = folder
    while not place.exists() and place != place.parent:
        place = place.parent
    if not place.is_dir():
        why = f"{place} is a file, not a folder"
    elif not os.access(place, os.W_OK | os.X_OK):
        why = f"{place} is {'on a read-only file system' if _read_only(place) else 'not writable'}"
    else:
        return folder
    raise OutputError(
        f"cannot write the {what} to {option} {shown or folder} ({why}); choose another place"
        + ("" if place.is_file() else " or fix its permissions")
    )


def _read_only(folder: Path) -> bool:
    try:
        return bool(os.statvfs(folder).f_flag & os.ST_RDONLY)
    except OSError:
        return False


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


def check_room(folder: str | Path, needed: int, what: str) -> None:
    """Room for about `needed` more bytes on `folder`'s file system, checked before a writer
    that a full disk can crash: HDF5 (h5py, Keras's .h5) ends the process with a segmentation
    fault when the disk fills at some points of a file (seen on a nearly full tmpfs), so a disk
    without room is an ENOSPC here, before it starts."""
    try:
        free = shutil.disk_usage(folder).free
    except OSError:
        return
    if free < needed:
        raise OSError(
            errno.ENOSPC,
            f"No space left on device ({free:,} bytes free; {what} needs about {needed:,})",
            str(folder),
        )


def h5_bytes(model, optimizer: bool = False) -> int:
    """About how many bytes an .h5 of `model` takes: its float32 weights (three times that with
    Adam's two moments, where the optimizer is saved), and a margin for HDF5's own records."""
    return int(model.count_params() * 4 * (3 if optimizer else 1) * 1.2) + 256 * 1024


def no_space(exc: BaseException) -> bool:
    """Whether `exc` (an OSError, or a library's error that wraps one in its message: h5py,
    TensorFlow's file writers) says the disk or the quota is full."""
    text = str(exc)
    return (
        getattr(exc, "errno", None) in (errno.ENOSPC, errno.EDQUOT)
        or "No space left" in text
        or "errno = 28" in text
        or "Disk quota exceeded" in text
    )


def write_error(
    exc: BaseException, path: str | Path | None, what: str, advise: bool = False
) -> OutputError:
    """An OSError (or h5py's, which says less) while writing `what` to `path`, for the user:
    what was being written, where, and why (a full disk above all); with `advise`, what to do
    (callers that know better, such as training's --resume, say it themselves)."""
    text = str(exc)
    full = no_space(exc)
    if full:
        reason = "no space left on the device"
    else:
        reason = getattr(exc, "strerror", None) or (
            text.splitlines()[0][:200] if text else type(exc).__name__
        )
    where = f" to {path}" if path else ""
    todo = ""
    if advise:
        todo = (
            "; make room, then run it again"
            if full
            else "; choose another place, or fix its permissions"
        )
    return OutputError(f"could not write {what}{where}: {reason}{todo}")


# --- the user's files: what may be replaced ----------------------------------------------------


def check_target(
    path: str | Path,
    *,
    what: str,
    folder: bool = False,
    ours: Callable[[Path], bool] | None = None,
    overwrite: bool = False,
    option: str = "--out",
    folder_kind: Callable[[Path], bool] | None = None,
) -> None:
    """Refuse to write `what` to `path` where that would replace something the user has.

    Nothing there: fine. A file (or, where `folder`, a folder) that `ours` says the tool
    wrote: fine, it is replaced. Another of the same kind (a file; a folder that
    `folder_kind` recognises, e.g. a SavedModel): only with --overwrite. A folder where a
    file goes, a file where a folder goes, or a folder holding anything else: never; an empty
    folder holds nothing to lose."""
    path = Path(path)
    if not path.exists() and not path.is_symlink():
        return
    shown = f"{option} {path}" if option else str(path)
    if path.exists() and not path.is_dir() and not path.is_file():
        raise OutputError(
            f"{shown} is not a regular file (a device, a pipe or a socket); the {what} is "
            "never written over one: choose another path"
        )
    if not folder:
        if path.is_dir():
            raise OutputError(
                f"{shown} is a folder; the {what} is a file: name a file path, or another place"
            )
    elif not path.is_dir():
        raise OutputError(
            f"{shown} is a file; the {what} is a folder: name a new folder, or another place"
        )
    elif not any(path.iterdir()):
        return
    elif folder_kind is not None and not folder_kind(path):
        names = sorted(p.name for p in path.iterdir())
        held = ", ".join(names[:3]) + (", ..." if len(names) > 3 else "")
        raise OutputError(
            f"{shown} is a folder holding other files ({held}), not one the {what} "
            "would replace; nothing was written: name a new folder"
        )
    if (ours is not None and ours(path)) or overwrite:
        return
    raise OutputError(
        f"{shown} exists and was not written by cnn-mnist: pass --overwrite to replace it "
        f"with the {what}, or choose another path"
    )
