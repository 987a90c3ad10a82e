"""The documentation: the site builds with `mkdocs build --strict` (no broken link, no page
left out of the nav), its reference lists every command, option and config key with the
schema's descriptions, and the README stays short with links that lead somewhere."""

from __future__ import annotations

import html
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import click
import pytest
from pydantic import BaseModel

from cnn_mnist.cli import cli
from cnn_mnist.config import schema

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("site")
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        env=dict(os.environ, NO_MKDOCS_2_WARNING="1"),
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return out


def _text(page: Path) -> str:
    """A built page's text, without tags, entities decoded, whitespace collapsed."""
    body = re.sub(r"<[^>]+>", " ", page.read_text(encoding="utf-8").replace("<wbr>", ""))
    return " ".join(html.unescape(body).split())


def _commands(group: click.Group, prefix: str = "cnn"):
    ctx = click.Context(group)  # `cnn`'s commands load lazily: not in group.commands
    for name in group.list_commands(ctx):
        command = group.get_command(ctx, name)
        assert command is not None, name
        path = f"{prefix} {name}"
        yield path, command
        if isinstance(command, click.Group):
            yield from _commands(command, path)


def _sections(page: str) -> dict[str, str]:
    """The CLI reference's HTML cut at each command's heading: {"cnn runs show": its part}."""
    headings = list(re.finditer(r"<h(\d) id=\"[^\"]*\">(cnn[^<]*)", page))
    return {
        m.group(2).strip(): page[
            m.end() : headings[i + 1].start() if i + 1 < len(headings) else len(page)
        ]
        for i, m in enumerate(headings)
    }


def test_every_command_and_option_is_in_the_cli_reference(site):
    page = (site / "reference" / "cli" / "index.html").read_text(encoding="utf-8")
    assert "Sentinel" not in page  # click 8.3's "no default", tidied by the hook
    # An example kept as typed, on its own lines.
    assert re.search(
        r"<code>cnn sweep --config sweep +\(the shipped search; "
        r"logs/sweeps/sweep.db\)\ncnn sweep --config sweep --status",
        page,
    )
    sections = _sections(page)
    commands = list(_commands(cli))
    assert {"cnn train", "cnn config show", "cnn config schema", "cnn runs rm"} <= {
        path for path, _ in commands
    }
    for path, command in commands:
        assert path in sections, f"{path} has no heading in the CLI reference"
        text = html.unescape(re.sub(r"<[^>]+>", " ", sections[path]))
        first_line = (command.help or "").split("\n")[0].strip()
        assert " ".join(first_line.split()[:6]) in " ".join(text.split()), path
        for param in command.params:
            if isinstance(param, click.Option):
                for opt in param.opts:
                    assert opt in text, f"{path}: {opt} is missing from the CLI reference"


def _schema_classes() -> list[type[BaseModel]]:
    found, todo = [], [schema.Config, *schema.LAYER_TYPES]
    while todo:
        cls = todo.pop()
        if cls in found:
            continue
        found.append(cls)
        for field in cls.model_fields.values():
            todo += [c for c in _models_in(field.annotation) if c not in found]
    return found


def _models_in(annotation) -> list[type[BaseModel]]:
    import typing

    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [c for arg in typing.get_args(annotation) for c in _models_in(arg)]


def test_every_schema_field_and_section_has_a_description():
    classes = _schema_classes()
    assert schema.SweepParameter in classes and schema.Conv2D in classes
    undescribed = [
        f"{cls.__name__}.{name}"
        for cls in classes
        for name, field in cls.model_fields.items()
        if not field.description
    ]
    assert not undescribed, f"Field(description=...) missing: {undescribed}"
    assert not [cls.__name__ for cls in classes if not (cls.__doc__ or "").strip()]


def _key_paths(cls: type[BaseModel], prefix: str = ""):
    for name, field in cls.model_fields.items():
        key = f"{prefix}{name}"
        yield key, field
        for inner in _models_in(field.annotation):
            if inner in schema.LAYER_TYPES:
                continue  # layers have a table each, by type
            sub = f"{key}.<key path>." if inner is schema.SweepParameter else f"{key}."
            yield from _key_paths(inner, sub)


def test_every_config_key_is_in_the_config_reference_with_its_description(site):
    text = _text(site / "reference" / "config" / "index.html")
    # Tags leave spaces where Markdown put code: compare the descriptions without spaces.
    dense = "".join(text.split())

    def described(description: str) -> bool:
        return "".join(description.replace("`", "").split()) in dense

    keys = [(key, field) for key, field in _key_paths(schema.Config) if "." in key]
    assert len(keys) > 50
    for key, field in keys:
        assert key in text, f"{key} is missing from the config reference"
        assert described(field.description), key
    for layer in schema.LAYER_TYPES:
        assert layer.__name__ in text
        for name, field in layer.model_fields.items():
            if name == "type":
                continue  # the table's title
            assert described(field.description), f"{layer.__name__}.{name}"
    # Defaults and choices come from the schema too.
    assert "training.collective_timeout number 120.0 > 0" in text
    assert "compile.optimizer string adam adam , adamw , sgd , rmsprop" in text


def test_the_search_index_holds_the_generated_reference(site):
    index = json.loads((site / "search" / "search_index.json").read_text(encoding="utf-8"))
    pages = " ".join(doc["text"] for doc in index["docs"])
    assert "collective_timeout" in pages and "--save-preprocessed" in pages


def test_the_stub_pages_of_other_guides_are_in_the_site(site):
    for page in ("export", "handwriting", "augmentation", "profiling", "performance"):
        assert (site / "guides" / page / "index.html").is_file(), page


def test_readme_is_short_and_its_links_lead_somewhere():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert len(readme.splitlines()) <= 150
    links = re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", readme) + re.findall(
        r"<img src=\"([^\"]+)\"", readme
    )
    local = [link for link in links if "://" not in link]
    assert len(local) > 10 and "docs/pictures/serve.png" in local
    missing = [link for link in local if not (REPO / link).exists()]
    assert not missing, missing
    for command in (
        'pip install -e ".[test]"',
        "cnn train",
        "python -m pytest",
        "cnn predict --index 10",
        "cnn tensorboard",
        "cnn serve",
    ):
        assert command in readme
    ci = (REPO / ".ci" / "run").read_text(encoding="utf-8")
    assert "\npython -m pytest\n" in ci and 'pip install --quiet -e ".[test]"' in ci
