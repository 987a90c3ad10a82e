"""The docs run (issue 32): every ```bash block of README.md, docs/index.md and docs/tutorial.md,
in order, as a reader in a fresh clone would type them, against the real `cnn`.

Each document runs in one `bash` process (`set -euo pipefail`), so its `export`s and files carry
over from block to block, in a temporary copy of the files a clone of this working tree holds,
with CNN_MNIST_DATA (the variable the docs tell the reader to set) at a small slice of the real
MNIST made here. A block that must not run (it installs, or serves until Ctrl-C) says so on the
line before its fence: `<!-- not run by the docs test: REASON -->` (docs/guides/testing.md).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import write_idx

REPO = Path(__file__).resolve().parent.parent
DOCUMENTS = ["README.md", "docs/index.md", "docs/tutorial.md"]
NOT_RUN = re.compile(r"^<!-- not run by the docs test: (?P<reason>\S.*?) -->$")
# Blocks that would install, hang or recurse if run: each must carry the mark.
MUST_NOT_RUN = re.compile(
    r"pip install|-m venv|cnn serve|cnn tensorboard|mkdocs serve|--open|-m pytest"
    r"|export CNN_MNIST_DATA"
)
TRAIN, TEST = 2000, 500  # images in the slice: enough for `cnn predict --index 100:110`


def blocks(document: str) -> list[tuple[int, str, str | None]]:
    """The ```bash blocks of a document: (line of the fence, code, reason it is not run)."""
    lines = (REPO / document).read_text(encoding="utf-8").splitlines()
    found, i = [], 0
    while i < len(lines):
        if lines[i].strip() == "```bash":
            end = next(j for j in range(i + 1, len(lines)) if lines[j].strip() == "```")
            mark = NOT_RUN.match(lines[i - 1].strip()) if i else None
            found.append((i + 1, "\n".join(lines[i + 1 : end]), mark and mark["reason"]))
            i = end
        i += 1
    return found


@pytest.mark.parametrize("document", DOCUMENTS)
def test_every_block_that_must_not_run_is_marked(document):
    found = blocks(document)
    assert [code for _, code, reason in found if reason is None], f"{document}: nothing runs"
    for line, code, reason in found:
        if reason is None:
            assert not MUST_NOT_RUN.search(code), f"{document}:{line} needs the not-run mark"
            assert "shared/data" not in code, f"{document}:{line}: a path of this repo's CI"
    # A mark that is not exactly the convention would let its block run: none half-written;
    # and a fence with more on its line (```bash title=...) would be skipped: none.
    text = (REPO / document).read_text(encoding="utf-8")
    fences = [line.strip() for line in text.splitlines() if line.strip().startswith("```bash")]
    assert set(fences) == {"```bash"}, fences
    marks = [line for line in text.splitlines() if "not run" in line and "<!--" in line]
    assert all(NOT_RUN.match(line.strip()) for line in marks), marks


def test_a_marked_block_is_still_a_code_block_and_the_mark_is_hidden():
    """The mark renders as nothing (an HTML comment) and the fence after it as code, in
    Python-Markdown with the site's extensions, as on GitHub (CommonMark ends the comment at
    its `-->` line)."""
    import markdown

    page = markdown.markdown(
        "Text.\n\n<!-- not run by the docs test: serves until Ctrl-C -->\n```bash\ncnn serve\n```\n",
        extensions=["pymdownx.superfences", "pymdownx.highlight"],
    )
    assert "<!-- not run by the docs test" in page and "<code>" in page
    assert "<p>&lt;!--" not in page and "```" not in page


def clone_of_the_working_tree(target: Path) -> Path:
    """The files a fresh clone would hold, as they are now: tracked ones and new ones git does
    not ignore (so uncommitted edits to the docs are what runs), none of the ignored outputs."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO,
        capture_output=True,
        check=True,
    ).stdout.decode()
    for name in filter(None, listed.split("\0")):
        source = REPO / name
        if source.is_file():  # a file deleted but not yet committed is not in the clone
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)
    return target


@pytest.fixture(scope="module")
def small_mnist(tmp_path_factory, real_mnist_path) -> Path:
    """The first 2,000 training and 500 test images of the real MNIST, as the four IDX .gz
    files (a slice has no checksum to match, so the loader takes it as MNIST)."""
    from cnn_mnist.stages.data import IDX_FILES, load_mnist

    mnist = load_mnist(real_mnist_path)
    folder = tmp_path_factory.mktemp("small-mnist")
    for role, stem in IDX_FILES.items():
        write_idx(folder / f"{stem}.gz", getattr(mnist, role)[: TRAIN if "train" in role else TEST])
    return folder


@pytest.mark.slow
@pytest.mark.parametrize("document", DOCUMENTS)
def test_the_document_runs_from_a_fresh_clone(document, small_mnist, tmp_path):
    if not (REPO / ".git").exists():
        pytest.skip("not a git checkout: no clone to copy")
    clone = clone_of_the_working_tree(tmp_path / "clone")
    # `cnn` on PATH runs the copy's code, as `pip install -e .` in the clone would.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    shim = bin_dir / "cnn"
    shim.write_text(f'#!/bin/sh\nPYTHONPATH="{clone}" exec "{sys.executable}" -m cnn_mnist "$@"\n')
    shim.chmod(0o755)
    script = ["set -euo pipefail"]
    for line, code, reason in blocks(document):
        if reason is None:
            script += [f"echo '>>> {document}:{line}'", code]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CNN_", "PYTHONPATH"))}
    env.update(PATH=f"{bin_dir}{os.pathsep}{env['PATH']}", CNN_MNIST_DATA=str(small_mnist))
    start = time.monotonic()
    result = subprocess.run(
        ["bash", "-c", "\n".join(script)],
        cwd=clone,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=600,
    )
    print(f"{document}: {time.monotonic() - start:.0f} s")
    assert result.returncode == 0, result.stdout[-5000:]
    assert "Traceback" not in result.stdout, result.stdout[-5000:]
    assert (clone / "models" / "digits_recognition_cnn.h5").is_file()
    if document == "docs/tutorial.md":
        assert (clone / "models" / "speedrun.h5").is_file()  # before step 8 serves it
        assert (clone / "seen").is_dir() and (clone / "digits.png").is_file()
