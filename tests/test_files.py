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


# --- what may be replaced (docs/guides/your-files.md) -----------------------------------------


def _png() -> bytes:
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.new("L", (4, 4)).save(buffer, "PNG")
    return buffer.getvalue()


def test_the_tools_pngs_are_marked_and_only_those_are_replaced(tmp_path):
    from PIL import Image

    ours, theirs = tmp_path / "ours.png", tmp_path / "theirs.png"
    files.write_bytes(ours, _png())
    theirs.write_bytes(_png())
    assert files.written_by_us(ours) and not files.written_by_us(theirs)
    assert Image.open(ours).info["Software"] == "cnn-mnist" and Image.open(ours).size == (4, 4)
    files.write_output(ours, _png(), what="picture", option="--save-image")  # its own: fine
    before = theirs.read_bytes()
    with pytest.raises(OutputError, match="theirs.png exists and was not written by cnn-mnist"):
        files.write_output(theirs, _png(), what="picture", option="--save-image")
    assert theirs.read_bytes() == before
    files.write_output(theirs, _png(), what="picture", option="--save-image", overwrite=True)
    assert files.written_by_us(theirs)


def test_a_file_that_appears_before_the_rename_is_kept(tmp_path):
    target = tmp_path / "p.png"

    def appears() -> None:
        target.write_bytes(b"the user's")
        files.check_target(target, what="picture", ours=files.written_by_us)

    with pytest.raises(OutputError, match="exists and was not written"):
        files.write_bytes(target, _png(), before_replace=appears)
    assert target.read_bytes() == b"the user's" and [p.name for p in tmp_path.iterdir()] == [
        "p.png"
    ]


def test_never_over_a_device_a_pipe_or_a_folder_of_other_files(tmp_path):
    pipe = tmp_path / "pipe"
    os.mkfifo(pipe)
    for overwrite in (False, True):
        with pytest.raises(OutputError, match="not a regular file"):
            files.check_target(pipe, what="picture", overwrite=overwrite)
        with pytest.raises(OutputError, match="not a regular file"):
            files.check_target("/dev/null", what="picture", overwrite=overwrite)
    folder = tmp_path / "models"
    folder.mkdir()
    (folder / "keep.h5").write_bytes(b"x")
    with pytest.raises(OutputError, match=r"folder holding other files \(keep.h5\)"):
        files.check_target(
            folder, what="export", folder=True, overwrite=True, folder_kind=lambda p: False
        )
    files.check_target(tmp_path / "empty", what="export", folder=True)  # nothing there
    (tmp_path / "empty").mkdir()
    files.check_target(tmp_path / "empty", what="export", folder=True)  # holds nothing


def test_check_place_makes_nothing(tmp_path):
    files.check_place(tmp_path / "a" / "b", "results", "--out")
    assert not (tmp_path / "a").exists()
    (tmp_path / "f").write_text("x")
    with pytest.raises(OutputError, match=r"f is a file, not a folder"):
        files.check_place(tmp_path / "f" / "b", "results", "--out")
