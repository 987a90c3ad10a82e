"""Reading a config: YAML files and shipped names, `--set` overrides, and validation errors
that name the key path and list the valid keys or choices. The schema itself is in schema.py.
"""

from __future__ import annotations

import difflib
import json
import logging
import re
import typing
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from cnn_mnist.config.schema import LAYER_NAMES, LAYER_TYPES, Config
from cnn_mnist.config.shapes import infer
from cnn_mnist.core.errors import ConfigError, clipped, shown

log = logging.getLogger(__name__)

DEFAULT_CONFIG_NAME = "default.yaml"
# The config's JSON Schema, beside the shipped configs, whose first line names it for editors
# (`# yaml-language-server: $schema=config.schema.json`); a test keeps it up to date.
SCHEMA_FILE = "config.schema.json"
JSON_SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"


# --- loading ----------------------------------------------------------------------------------


# A config is a few dozen values, nested four or five deep. YAML's aliases (*name) repeat the
# value anchored as &name wherever they stand, and aliases of anchors of aliases multiply: a
# few hundred bytes can stand for billions of values ("billion laughs"), which validating or
# printing would spell out. So the parsed nodes are measured before any value is built.
MAX_DEPTH = 50  # lists and mappings inside each other, aliases expanded
ALIAS_BUDGET = 10_000  # values that aliases may add to those written out


class Refused(Exception):
    """YAML that parses but that a config refuses; `line` (from 1) is where, if known. Not a
    yaml.YAMLError: a `--set` value that is not YAML is a string, one that is refused is not."""

    def __init__(self, message: str, line: int | None = None) -> None:
        super().__init__(message)
        self.line = line


class _Loader(yaml.SafeLoader):
    """YAML 1.1 reads `1e-4` as a string; learning rates are written that way, so read floats.
    Nesting, aliases and integers are held to what a config can use (above)."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self.depth = 0

    def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
        # PyYAML composes nested nodes by recursion: stop before Python's limit does.
        self.depth += 1
        try:
            if self.depth > MAX_DEPTH:
                raise Refused(_TOO_DEEP, self.peek_event().start_mark.line + 1)
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1

    def get_single_node(self) -> yaml.Node | None:
        node = super().get_single_node()
        if node is not None:
            _Tally().measure(node)
        return node

    def construct_yaml_int(self, node: yaml.ScalarNode) -> int:
        try:
            return super().construct_yaml_int(node)
        except ValueError:  # more digits than Python converts (4,300)
            raise Refused(
                f"an integer of {len(node.value)} digits; no setting takes one that long",
                node.start_mark.line + 1,
            ) from None


_TOO_DEEP = (
    f"lists and mappings nested more than {MAX_DEPTH} deep; a config nests them four or five "
    "deep (see `cnn config show`)"
)
_Loader.add_constructor("tag:yaml.org,2002:int", _Loader.construct_yaml_int)
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
    |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
    |\.[0-9_]+(?:[eE][-+]?[0-9]+)?
    |[-+]?\.(?:inf|Inf|INF)
    |\.(?:nan|NaN|NAN))$""",
        re.X,
    ),
    list("-+0123456789."),
)


class _Tally:
    """Each node's size (values, itself included) and depth with its aliases expanded, each
    node measured once: time and memory in proportion to the text, however much the aliases
    stand for. A node is met again only through an alias, and an anchor comes before its
    aliases, so the recursion goes no deeper than the text's own nesting (MAX_DEPTH). Each
    mapping's keys are checked on the way: YAML keeps the last of two equal keys, silently."""

    def __init__(self) -> None:
        self.measured: dict[int, tuple[int, int]] = {}
        self.open: set[int] = set()

    def measure(self, node: yaml.Node, path: str = "") -> tuple[int, int]:
        key = id(node)
        if key in self.measured:
            return self.measured[key]
        line = node.start_mark.line + 1
        if key in self.open:
            raise Refused(
                "an alias (*name) inside the value it names (&name) repeats it without end; "
                "write the value out instead",
                line,
            )
        self.open.add(key)
        size, depth = 1, 1
        for child, child_path in _children(node, path):
            child_size, child_depth = self.measure(child, child_path)
            size, depth = size + child_size, max(depth, child_depth + 1)
        self.open.discard(key)
        self.measured[key] = size, depth
        if depth > MAX_DEPTH:
            raise Refused(_TOO_DEEP, line)
        # Without aliases a node's size is at most the number of nodes measured so far.
        if size > len(self.measured) + ALIAS_BUDGET:
            raise Refused(
                f"uses YAML aliases (*name) that expand to too much (over {ALIAS_BUDGET:,} "
                "values); write the values out, or use fewer aliases"
            )
        return size, depth


def _children(node: yaml.Node, path: str) -> list[tuple[yaml.Node, str]]:
    """A node's children, each with its key path (`training.epochs`, `model.layers[3]`); a
    key that a mapping has twice is refused. Merged keys (`<<: *name`) may be overridden."""
    if isinstance(node, yaml.SequenceNode):
        return [(item, f"{path}[{i}]") for i, item in enumerate(node.value)]
    if not isinstance(node, yaml.MappingNode):
        return []
    children: list[tuple[yaml.Node, str]] = []
    first: dict[tuple[str, str], int] = {}
    for key, value in node.value:
        name = path
        if isinstance(key, yaml.ScalarNode) and key.tag != "tag:yaml.org,2002:merge":
            name = clipped(f"{path}.{key.value}" if path else key.value, 100)
            if (key.tag, key.value) in first:
                raise Refused(
                    f"key {shown(name)} appears twice (first at line "
                    f"{first[key.tag, key.value]}); merge the two into one (YAML would keep "
                    "only the last, silently)",
                    key.start_mark.line + 1,
                )
            first[key.tag, key.value] = key.start_mark.line + 1
        children += [(key, path), (value, name)]
    return children


def _yaml(text: str):
    return yaml.load(text, Loader=_Loader)  # noqa: S506 - a SafeLoader subclass


def default_config_path() -> Path:
    """The lecture's config, shipped inside the package so `cnn train` works from any folder."""
    return Path(str(resources.files("cnn_mnist.config") / "shipped" / DEFAULT_CONFIG_NAME))


def shipped_configs() -> list[str]:
    """Names of the configs that ship with the package (`--config speedrun`)."""
    return sorted(p.stem for p in default_config_path().parent.glob("*.yaml"))


def resolve_config_path(path: str | Path | None) -> Path:
    """A file path, or the name of a shipped config; the default config if None."""
    if not path:
        return default_config_path()
    path = Path(path)
    shipped = default_config_path().parent / f"{path.stem}.yaml"
    try:
        missing = not path.exists()
    except OSError:  # a name too long for the system, say: read_yaml says so
        return path
    if missing and path.parent == Path(".") and shipped.is_file():
        return shipped
    return path


def read_yaml(path: str | Path) -> dict[str, Any]:
    """Read a config file into a dict; a missing file or broken YAML is a ConfigError."""
    path = Path(path)
    try:
        found = path.is_file()
    except OSError as exc:  # ENAMETOOLONG: is_file() raises it rather than say False
        raise ConfigError(f"cannot read config file {clipped(str(path))}: {exc.strerror}") from None
    if not found:
        raise ConfigError(
            f"config file not found: {clipped(str(path), 300)} (pass a YAML file to --config, or "
            f"one of the shipped configs: {', '.join(shipped_configs())})"
        )
    try:
        raw = _yaml(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or "not valid YAML"
        raise ConfigError(f"{path}: broken YAML{where}: {clipped(problem, 120)}") from None
    except Refused as exc:
        where = f" line {exc.line}" if exc.line else ""
        raise ConfigError(f"{path}{where}: {exc}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read config file {path}: {exc}") from None
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ConfigError(
            f"{path}: expected a mapping of sections (data, model, ...), got {type(raw).__name__}"
        )
    return raw


def parse_set(item: str) -> tuple[str, Any]:
    """`key.path=value` -> (key path, YAML-parsed value)."""
    key, sep, text = item.partition("=")
    if not sep or not key.strip():
        raise ConfigError(
            f"--set {shown(item)}: expected KEY.PATH=VALUE, for example "
            "--set training.epochs=2 or --set model.layers[3].rate=0.3"
        )
    try:
        value = _yaml(text) if text.strip() else None
    except yaml.YAMLError:
        value = text  # not YAML: take it as a string and let the schema judge it
    except Refused as exc:
        raise ConfigError(f"--set {clipped(key.strip())}: {exc}") from None
    return key.strip(), value


def split_key(key: str, what: str = "--set") -> list[str | int]:
    """A key path such as `model.layers[3].rate` as its parts: ["model", "layers", 3, "rate"]."""
    parts: list[str | int] = []
    for part in key.split("."):
        name, _, rest = part.partition("[")
        if name:
            parts.append(name)
        while rest:
            index, _, rest = rest.partition("]")
            if not (
                index.isascii() and index.isdigit() and len(index) < 10
            ):  # not '²', nor 4,300 digits
                raise ConfigError(
                    f"{what} {clipped(key)}: bad list index [{clipped(index, 20)}] "
                    "(expected [0], [1], ...)"
                )
            parts.append(int(index))
            rest = rest.removeprefix("[")
    return parts


def value_at(tree: Any, key: str) -> Any:
    """The value at a key path in a config dict (None where there is none)."""
    value = tree
    for part in split_key(key, "key path"):
        if isinstance(part, int):
            value = value[part] if isinstance(value, list) and part < len(value) else None
        else:
            value = value.get(part) if isinstance(value, dict) else None
    return value


def differences(a: Any, b: Any, ignore: tuple[str, ...] = (), path: str = "") -> dict[str, tuple]:
    """{key path: (value in a, value in b)} where two config dicts differ, but at the paths in
    `ignore`. Lists of the same length and kinds of item are compared item by item; a list
    that changes in kind or length (another layer stack) is one value."""
    if isinstance(a, dict) and isinstance(b, dict):
        out: dict[str, tuple] = {}
        for key in dict.fromkeys([*a, *b]):
            out.update(differences(a.get(key), b.get(key), ignore, f"{path}.{key}".lstrip(".")))
        return out
    if (
        isinstance(a, list)
        and isinstance(b, list)
        and len(a) == len(b)
        and [_kind(x) for x in a] == [_kind(x) for x in b]
    ):
        out = {}
        for i, (x, y) in enumerate(zip(a, b)):
            out.update(differences(x, y, ignore, f"{path}[{i}]"))
        return out
    return {} if a == b or path in ignore else {path: (a, b)}


def _kind(item: Any) -> Any:
    return item.get("type") if isinstance(item, dict) else type(item).__name__


def apply_override(raw: dict[str, Any], key: str, value: Any) -> None:
    """Set `key` (like `model.layers[3].rate`) in the raw config dict, creating sections."""
    parts = split_key(key)
    node: Any = raw
    for depth, part in enumerate(parts):
        last = depth == len(parts) - 1
        where = _format_loc(parts[: depth + 1])
        if isinstance(part, int):
            if not isinstance(node, list):
                raise ConfigError(
                    f"--set {clipped(key)}: {_format_loc(parts[:depth]) or 'config'} is not a list"
                )
            if part >= len(node):
                raise ConfigError(
                    f"--set {clipped(key)}: {where} is out of range "
                    f"(the list has {len(node)} items: 0 to {len(node) - 1})"
                )
        elif not isinstance(node, dict):
            raise ConfigError(
                f"--set {clipped(key)}: {_format_loc(parts[:depth])} is not a section"
            )
        if last:
            node[part] = value
        else:
            if isinstance(part, str) and part not in node:
                node[part] = [] if isinstance(parts[depth + 1], int) else {}
            node = node[part]


def _format_loc(loc: list[str | int] | tuple) -> str:
    """`model.layers[3].rate`; a key longer than a key path's (the user's) is cut short."""
    out = ""
    for part in loc:
        name = clipped(str(part), 60)
        out += f"[{part}]" if isinstance(part, int) else (f".{name}" if out else name)
    return out


def _clean_loc(loc: tuple) -> list[str | int]:
    """Drop the tags pydantic inserts for unions (layer type names, 'tuple[int, int]', ...)."""
    clean: list[str | int] = []
    for i, part in enumerate(loc):
        after_index = i > 0 and isinstance(loc[i - 1], int)
        if i == 2 and tuple(loc[:2]) == ("sweep", "parameters"):
            clean.append(part)  # a key path such as model.layers[3].rate, not a tag
            continue
        if isinstance(part, str) and (
            (after_index and part in LAYER_NAMES)
            or "[" in part
            or part in ("none", "bool", "int", "constrained-int", "float", "str")
        ):
            continue
        clean.append(part)
    return clean


def _section_at(loc: list[str | int], raw: Any) -> type[BaseModel] | None:
    """The schema class that holds the key at `loc`, to list valid keys for a misspelt one."""
    cls: Any = Config
    node: Any = raw
    for part in loc[:-1]:
        if isinstance(part, int):
            node = node[part] if isinstance(node, list) and part < len(node) else None
            if isinstance(node, dict):
                cls = next((c for c in LAYER_TYPES if c.__name__ == node.get("type")), None)
            continue
        node = node.get(part) if isinstance(node, dict) else None
        if isinstance(cls, _Values):  # a key of a mapping (sweep.parameters): its value's class
            cls = cls.cls
            continue
        field = cls.model_fields.get(part) if cls else None
        cls = _model_class(field.annotation) if field else None
    return cls


class _Values:
    """The class of a mapping's values, for keys that the user names (dict[str, X])."""

    def __init__(self, cls: type[BaseModel]) -> None:
        self.cls = cls


def _model_class(annotation: Any) -> type[BaseModel] | _Values | None:
    """The schema class in `X`, `X | None` or `dict[str, X]`."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    args = typing.get_args(annotation)
    if typing.get_origin(annotation) is dict and len(args) == 2:
        inner = _model_class(args[1])
        return _Values(inner) if isinstance(inner, type) else None
    models = [a for a in args if isinstance(a, type) and issubclass(a, BaseModel)]
    return models[0] if len(models) == 1 else None


def _describe_error(err: Mapping[str, Any], raw: dict[str, Any]) -> str:
    loc = _clean_loc(err["loc"])
    where = _format_loc(loc) or "config"
    kind = err["type"]
    given = err.get("input")
    if kind == "extra_forbidden":
        cls = _section_at(loc, raw)
        valid = (
            [k for k in cls.model_fields if k != "type" or cls not in LAYER_TYPES] if cls else []
        )
        hint = difflib.get_close_matches(str(loc[-1]), valid, n=1)
        msg = f"{where}: unknown key"
        if hint:
            msg += f" (did you mean '{hint[0]}'?)"
        if valid:
            msg += f"; valid keys here: {', '.join(valid)}"
        return msg
    if kind in ("union_tag_invalid", "union_tag_not_found"):
        got = given.get("type") if isinstance(given, dict) else given
        hint = difflib.get_close_matches(str(got), LAYER_NAMES, n=1)
        msg = (
            f"{where}.type: unknown layer type {shown(got)}" if got else f"{where}: missing 'type'"
        )
        if hint:
            msg += f" (did you mean '{hint[0]}'?)"
        return msg + f"; valid types: {', '.join(LAYER_NAMES)}"
    message = err["msg"].removeprefix("Value error, ")
    if kind == "missing":
        return f"{where}: required key is missing"
    if kind == "literal_error":
        return f"{where}: {message}, got {shown(given)}"
    if kind.endswith("_type") or kind.startswith(("greater", "less", "too_", "finite")):
        return f"{where}: {message}, got {shown(given)} ({type(given).__name__})"
    return f"{where}: {message}"


def _join(key: str, messages: list[str]) -> str:
    """`key: Input should be 'auto' or a valid boolean, got 'maybe'` from one line per member."""
    if len(messages) == 1 or not all(", got " in m for m in messages):
        return f"{key}: {'; '.join(messages)}"
    wants = [m.split(", got ")[0].removeprefix("Input should be ") for m in messages]
    return (
        f"{key}: expected {' or '.join(dict.fromkeys(wants))}, got {messages[0].split(', got ')[1]}"
    )


def validate(raw: dict[str, Any], source: str = "config") -> Config:
    """Validate a raw dict against the schema; all problems in one ConfigError."""
    try:
        return Config.model_validate(raw)
    except ValidationError as exc:
        errors = [e for e in exc.errors() if e["type"] != "none_required"] or exc.errors()
        # A union ('auto' or an integer) fails once per member: one line, "... or ...".
        by_key: dict[str, list[str]] = {}
        for err in errors:
            line = _describe_error(err, raw)
            key, _, message = line.partition(": ")
            by_key.setdefault(key, []).append(message)
        lines = [clipped(_join(key, messages), 300) for key, messages in by_key.items()]
        # The first line is the one a user reads; two more at most below it.
        head = f"invalid {source}: {lines[0]}"
        more = lines[1:] if len(lines) <= 3 else [lines[1], f"{len(lines) - 2} more problems"]
        head += "".join(f"\n  also: {line}" for line in more)
        raise ConfigError(head) from None


def load_config(
    path: str | Path | None = None,
    overrides: dict[str, Any] | None = None,
    sets: list[str] | tuple[str, ...] = (),
) -> Config:
    """Read a YAML config (default: the lecture's), apply overrides, validate.

    `overrides` maps key paths to values (from options like --epochs); `sets` are
    `key.path=value` strings from --set. Both are type-checked like the file.
    """
    config_path = resolve_config_path(path)
    raw = read_yaml(config_path)
    for item in sets:
        apply_override(raw, *parse_set(item))
    for key, value in (overrides or {}).items():
        if value is not None:
            apply_override(raw, key, value)
    config = validate(raw, source=f"config {config_path.name}")
    check_shapes(config)
    return config


def check_shapes(config: Config) -> None:
    """Shapes checked before building: an empty output is an error, a misfit a warning."""
    _, warnings = infer(config.model)
    for warning in warnings:
        log.warning("%s", warning)


# --- printing it: `cnn config show` and `cnn config schema` ---------------------------------


class _Flow(dict):
    """A mapping written on one line (a layer, as the shipped configs write them)."""


class _Dumper(yaml.SafeDumper):
    pass


_Dumper.add_representer(
    _Flow,
    lambda dumper, data: dumper.represent_mapping(
        "tag:yaml.org,2002:map", data.items(), flow_style=True
    ),
)
_Dumper.add_representer(
    list,
    lambda dumper, data: dumper.represent_sequence(
        "tag:yaml.org,2002:seq",
        data,
        flow_style=not any(isinstance(item, (dict, list)) for item in data),
    ),
)


def to_yaml(config: Config) -> str:
    """The resolved config as YAML, every key with its value (`cnn train --config` reads it
    back): sections in blocks, each layer and each list of values on one line."""
    plain = config.to_dict()
    plain["model"]["layers"] = [_Flow(layer) for layer in plain["model"]["layers"]]
    return yaml.dump(plain, Dumper=_Dumper, sort_keys=False, width=100)


def json_schema() -> dict[str, Any]:
    """The config's JSON Schema (draft 2020-12), the schema's descriptions included: what an
    editor completes and checks a config file with."""
    return {"$schema": JSON_SCHEMA_DIALECT, **Config.model_json_schema()}


def json_schema_text() -> str:
    """`json_schema()` as the text of the shipped schema file."""
    return json.dumps(json_schema(), indent=2, ensure_ascii=False) + "\n"


def schema_file() -> Path:
    """The shipped JSON Schema file, beside the shipped configs."""
    return default_config_path().parent / SCHEMA_FILE
