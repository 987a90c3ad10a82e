"""An mkdocs hook: the config reference, made from cnn_mnist/config/schema.py at build time.

A page that holds the line `<!-- config-reference -->` gets, in its place, one table per
section of the config, then one per layer type: every key with its type, default, allowed
values and the description written in the schema (`Field(description=...)`). So the schema is
the one source of the docs, the errors and the defaults; nothing here is written by hand.

It also tidies mkdocs-click's CLI reference: no `Sentinel.UNSET` (click 8.3's "no default")
in its Default column, and the examples in the commands' help kept as `--help` shows them
(click prints a paragraph after a `\b` line as typed; mkdocs-click drops that line and lets
Markdown rewrap the paragraph; here it becomes a code block).
"""

from __future__ import annotations

import html
import inspect
import json
import typing
from typing import Any, Literal, Union, get_args, get_origin

import annotated_types
from markdown import Extension
from markdown.preprocessors import Preprocessor
from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined, to_jsonable_python

from cnn_mnist.config import schema

MARKER = "<!-- config-reference -->"
_YAML_TYPES = {
    "str": "string",
    "int": "integer",
    "float": "number",
    "bool": "boolean",
    "NoneType": "null",
}
_CONSTRAINTS = {
    annotated_types.Ge: ("≥", "ge"),
    annotated_types.Gt: (">", "gt"),
    annotated_types.Le: ("≤", "le"),
    annotated_types.Lt: ("<", "lt"),
}


def on_page_markdown(markdown: str, page, config, files) -> str:
    """mkdocs's hook: the marker becomes the reference."""
    return markdown.replace(MARKER, config_reference()) if MARKER in markdown else markdown


def on_config(config):
    """mkdocs's hook: click's as-typed paragraphs become code blocks (NoRewrap)."""
    config.markdown_extensions.append(NoRewrap())
    return config


class _NoRewrapLines(Preprocessor):
    def run(self, lines: list[str]) -> list[str]:
        if "**Usage:**" not in lines:  # only mkdocs-click's output
            return lines
        out: list[str] = []
        fenced, paragraph = False, []
        for line in [*lines, ""]:
            if line.startswith("```"):
                fenced = not fenced
            # click 8.3 marks "no default" with a sentinel, which mkdocs-click prints.
            line = line.replace("`Sentinel.UNSET`", "")
            if fenced or line.startswith("```") or line.strip():
                (out if fenced or line.startswith("```") else paragraph).append(line)
                continue
            out += _as_typed(paragraph) + [line]
            paragraph = []
        return out[:-1]


def _as_typed(paragraph: list[str]) -> list[str]:
    """mkdocs-click drops click's `\b` lines; the paragraphs they marked are the examples,
    every line of which names a `cnn` command."""
    if paragraph and not paragraph[0].startswith("#") and all("cnn " in line for line in paragraph):
        return ["```text", *paragraph, "```"]
    return paragraph


class NoRewrap(Extension):
    """After mkdocs-click (priority 141), before fenced code blocks (25)."""

    def extendMarkdown(self, md) -> None:
        md.preprocessors.register(_NoRewrapLines(md), "click_no_rewrap", 100)


# --- the rows ---------------------------------------------------------------------------------


def rows(model: type[BaseModel], prefix: str = "") -> list[dict[str, str]]:
    """One row per key of `model`, sections' keys after the section's own row, depth first."""
    out = []
    for name, field in model.model_fields.items():
        key = f"{prefix}{name}"
        pair = any(getattr(meta, "func", None) is schema._pair for meta in field.metadata)
        out.append(
            {
                "key": key,
                "type": "integer or [integer, integer]" if pair else type_text(field.annotation),
                "default": default_text(field),
                "allowed": allowed_text(field),
                "description": field.description or "",
            }
        )
        inner = _section(field.annotation)
        if inner is not None and inner is not schema.SweepParameter:
            out += rows(inner, f"{key}.")
        elif inner is schema.SweepParameter:
            out += rows(inner, f"{key}.<key path>.")
    return out


def layer_rows(layer: type[BaseModel]) -> list[dict[str, str]]:
    """A layer type's arguments (its `type` is the table's title)."""
    return [row for row in rows(layer) if row["key"] != "type"]


def _section(annotation: Any) -> type[BaseModel] | None:
    """The schema class a key holds (`X`, `X | None`, `dict[str, X]`), not a list's items."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if get_origin(annotation) is list:
        return None
    for arg in get_args(annotation):
        found = _section(arg)
        if found is not None:
            return found
    return None


def type_text(annotation: Any) -> str:
    """`int`, `float or null`, `[int, int]`, `list of layers`, ... as a reader says it."""
    if annotation is type(None):
        return "null"
    if annotation is schema.Pair:
        return "integer or [integer, integer]"
    origin, args = get_origin(annotation), get_args(annotation)
    if origin is typing.Annotated:
        return type_text(args[0])
    if origin is Literal:
        kinds = {_YAML_TYPES.get(type(value).__name__, "") for value in args}
        return " or ".join(sorted(kinds))
    if origin in (Union, getattr(__import__("types"), "UnionType", Union)):
        texts = [type_text(arg) for arg in args]
        return " or ".join(dict.fromkeys(t for text in texts for t in text.split(" or ")))
    if origin is list:
        inner = args[0]
        if (
            get_origin(inner) is typing.Annotated
            and get_args(inner)[0] is Union[schema.LAYER_TYPES]
        ):
            return "list of layers"
        text = type_text(inner)
        return f"list of ({text})" if " or " in text else f"list of {text}"
    if origin is tuple:
        return "[" + ", ".join(type_text(arg) for arg in args) + "]"
    if origin is dict:
        return f"mapping of {type_text(args[0])} to {type_text(args[1])}"
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return "section"
    name = getattr(annotation, "__name__", str(annotation))
    return _YAML_TYPES.get(name, name)


def default_text(field: FieldInfo) -> str:
    """The default as YAML writes it; `required` where there is none."""
    if field.default_factory is not None:
        value = field.default_factory()
        if isinstance(value, BaseModel):
            return "(its keys' defaults)"
        if isinstance(value, list) and value and isinstance(value[0], BaseModel):
            return f"the lecture's {len(value)} layers"
    elif field.default is PydanticUndefined:
        return "required"
    else:
        value = field.default
    return f"`{json.dumps(to_jsonable_python(value))}`".replace('"', "")


def allowed_text(field: FieldInfo) -> str:
    """The choices of a Literal and the bounds of a number, anywhere in the annotation."""
    parts = [
        f"`{value}`" if not isinstance(value, bool) else f"`{str(value).lower()}`"
        for value in _literals(field.annotation)
    ]
    bounds = _bounds(field.metadata) or _annotated_bounds(field.annotation)
    if parts and bool in get_args(field.annotation):  # "auto" or a boolean
        parts += ["`true`", "`false`"]
    if bounds:
        parts.append(bounds)
    for meta in field.metadata:
        if isinstance(meta, annotated_types.MinLen) and meta.min_length:
            parts.append(f"at least {meta.min_length}")
    return ", ".join(dict.fromkeys(parts))


def _literals(annotation: Any) -> list[Any]:
    if get_origin(annotation) is Literal:
        return list(get_args(annotation))
    return [value for arg in get_args(annotation) for value in _literals(arg)]


def _bounds(metadata: list[Any]) -> str:
    found = [
        f"{sign} {getattr(meta, attr)}"
        for meta in metadata
        for kind, (sign, attr) in _CONSTRAINTS.items()
        if isinstance(meta, kind)
    ]
    return " and ".join(found)


def _annotated_bounds(annotation: Any) -> str:
    """Bounds inside a union member: `"auto" | Annotated[int, Field(ge=1)]`."""
    for arg in get_args(annotation):
        if get_origin(arg) is typing.Annotated:
            inner = [
                m
                for meta in get_args(arg)[1:]
                for m in (meta.metadata if isinstance(meta, FieldInfo) else [meta])
            ]
            if _bounds(inner):
                return f"integer {_bounds(inner)}"
    return ""


# --- the page ---------------------------------------------------------------------------------


def _table(table_rows: list[dict[str, str]]) -> str:
    lines = ["| key | type | default | allowed | description |", "| --- | --- | --- | --- | --- |"]
    for row in table_rows:
        cells = [_key(row["key"]), row["type"], row["default"], row["allowed"], row["description"]]
        lines.append("| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |")
    return "\n".join(lines)


def _key(key: str) -> str:
    """A key path that may break after its dots (and only there) in a narrow column."""
    return f'<code class="key">{html.escape(key).replace(".", ".<wbr>")}</code>'


def config_reference() -> str:
    """The whole reference, as Markdown."""
    parts = []
    for name, field in schema.Config.model_fields.items():
        parts.append(
            f"## {name}\n\n{field.description or ''}\n\n"
            + _table([row for row in rows(schema.Config) if row["key"].startswith(f"{name}.")])
        )
    parts.append(
        "## Layers\n\nEach item of `model.layers` is a `type` and that Keras layer's "
        "arguments, with Keras's names and defaults."
    )
    for layer in schema.LAYER_TYPES:
        body = _table(layer_rows(layer)) if layer_rows(layer) else "No arguments."
        parts.append(f"### {layer.__name__}\n\n{inspect.cleandoc(layer.__doc__ or '')}\n\n{body}")
    return "\n\n".join(parts) + "\n"
