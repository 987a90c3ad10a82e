import os

import pytest

from cnn_mnist.core import files
from cnn_mnist.core.errors import OutputError


def test_atomic_write_replaces_only_on_success(tmp_path):
    target = tmp_path / "out" / "results.json"
    files.write_json(target, {"a": 1})
    assert target.read_text().strip().startswith("{")
    with pytest.raises(RuntimeError):
        with files.atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("boom")
    assert '"a": 1' in target.read_text()
    assert sorted(p.name for p in target.parent.iterdir()) == ["results.json"]


def test_nothing_written_is_a_failure(tmp_path):
    target = tmp_path / "model.h5"
    target.write_bytes(b"good")
    with pytest.raises(OSError, match="nothing was written"):
        with files.atomic_path(target):
            pass
    assert target.read_bytes() == b"good"


def test_unwritable_dir_is_reported(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(OutputError, match="cannot write the model to .*file/sub"):
        files.ensure_writable_dir(blocker / "sub", "model")


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write anywhere")
def test_read_only_dir_is_reported(tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o500)
    with pytest.raises(OutputError, match="Permission denied"):
        files.ensure_writable_dir(folder, "logs")


def test_written_files_have_ordinary_permissions(tmp_path):
    mask = os.umask(0o022)
    try:
        path = files.write_text(tmp_path / "x.json", "{}")
    finally:
        os.umask(mask)
    assert path.stat().st_mode & 0o777 == 0o644
