"""The typed config schema: every default lives here, `configs/*.yaml` only hold values.

A config has six sections: data, model, compile, training, tensorboard and output. Unknown
keys, unknown layer types, wrong types and out-of-range values are rejected before anything is
trained, with the key path in the message (for example `model.layers[2].pool_size`).
"""

from __future__ import annotations

import difflib
import json
import logging
import os
import re
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal, Union

import yaml
from pydantic import (
    BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, field_validator, model_validator,
)

from cnn_mnist.errors import ConfigError

log = logging.getLogger(__name__)

DEFAULT_CONFIG_NAME = "default.yaml"

Activation = Literal["relu", "sigmoid", "tanh", "softmax", "linear", "elu", "selu", "gelu", "swish"]
Padding = Literal["valid", "same"]


def _pair(value: Any) -> tuple[int, int]:
    """Keras accepts `3` or `[3, 3]` for a kernel, stride or pool size; so do we."""
    if isinstance(value, bool) or not isinstance(value, (int, list, tuple)):
        raise ValueError(f"expected a positive integer or a list of two, got {value!r}")
    pair = (value, value) if isinstance(value, int) else tuple(value)
    if len(pair) != 2 or not all(isinstance(v, int) and not isinstance(v, bool) for v in pair):
        raise ValueError(f"expected a positive integer or a list of two, got {value!r}")
    if min(pair) < 1:
        raise ValueError(f"expected sizes of at least 1, got {value!r}")
    return pair  # type: ignore[return-value]


Pair = Annotated[tuple[int, int], BeforeValidator(_pair)]


def _as_tuple(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


class _Section(BaseModel):
    # strict: "32" is not 32, and true is not 1. forbid: a misspelt key is an error.
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


# --- layers: Keras's own names, arguments and defaults ---------------------------------------


class Conv2D(_Section):
    type: Literal["Conv2D"]
    filters: int = Field(ge=1)
    kernel_size: Pair
    strides: Pair = (1, 1)
    padding: Padding = "valid"
    activation: Activation | None = None


class MaxPooling2D(_Section):
    type: Literal["MaxPooling2D"]
    pool_size: Pair = (2, 2)
    strides: Pair | None = None  # None: Keras uses pool_size
    padding: Padding = "valid"


class AveragePooling2D(_Section):
    type: Literal["AveragePooling2D"]
    pool_size: Pair = (2, 2)
    strides: Pair | None = None
    padding: Padding = "valid"


class Dropout(_Section):
    type: Literal["Dropout"]
    rate: float = Field(ge=0.0, lt=1.0)


class Flatten(_Section):
    type: Literal["Flatten"]


class GlobalAveragePooling2D(_Section):
    type: Literal["GlobalAveragePooling2D"]


class BatchNormalization(_Section):
    type: Literal["BatchNormalization"]
    momentum: float = Field(default=0.99, gt=0.0, lt=1.0)
    epsilon: float = Field(default=0.001, gt=0.0)


class Dense(_Section):
    type: Literal["Dense"]
    units: int = Field(ge=1)
    activation: Activation | None = None


LAYER_TYPES = (
    Conv2D, MaxPooling2D, AveragePooling2D, Dropout, Flatten, GlobalAveragePooling2D,
    BatchNormalization, Dense,
)
LAYER_NAMES = tuple(cls.__name__ for cls in LAYER_TYPES)
Layer = Annotated[Union[LAYER_TYPES], Field(discriminator="type")]


def _lecture_layers() -> list[Layer]:
    """The lecture's model (COMP2211, "Build the model"): 1,199,882 parameters."""
    return [
        Conv2D(type="Conv2D", filters=32, kernel_size=(3, 3), activation="relu"),
        Conv2D(type="Conv2D", filters=64, kernel_size=(3, 3), activation="relu"),
        MaxPooling2D(type="MaxPooling2D", pool_size=(2, 2)),
        Dropout(type="Dropout", rate=0.25),
        Flatten(type="Flatten"),
        Dense(type="Dense", units=128, activation="relu"),
        Dropout(type="Dropout", rate=0.5),
        Dense(type="Dense", units=10, activation="softmax"),
    ]


# --- sections ---------------------------------------------------------------------------------


class DataConfig(_Section):
    # None: $CNN_MNIST_DATA, else Keras's download-and-cache.
    path: str | None = None
    # The lecture fed raw 0-255 pixels (0.9777 after 1 epoch); scaling to [0, 1] trains better.
    normalize: bool = True
    # Take the first N images, for quick runs.
    limit_train: int | None = Field(default=None, ge=1)
    limit_test: int | None = Field(default=None, ge=1)


class ModelConfig(_Section):
    name: str = "digits_recognition_cnn"
    input_shape: Annotated[tuple[int, int, int], BeforeValidator(_as_tuple)] = (28, 28, 1)
    layers: list[Layer] = Field(default_factory=_lecture_layers, min_length=1)


class ScheduleConfig(_Section):
    """How the learning rate moves over all training steps; `compile.learning_rate` is its peak.

    one_cycle: rises linearly from learning_rate x start_factor to learning_rate over the first
    `warmup` of the steps, then falls along a cosine to learning_rate x end_factor.
    cosine: falls along a cosine from learning_rate to learning_rate x end_factor.
    Both are Keras's CosineDecay, so a saved model loads with plain Keras.
    """

    type: Literal["one_cycle", "cosine"]
    warmup: float = Field(default=0.25, ge=0.0, lt=1.0)
    start_factor: float = Field(default=0.04, gt=0.0, le=1.0)
    end_factor: float = Field(default=0.0, ge=0.0, le=1.0)


class CompileConfig(_Section):
    optimizer: Literal["adam", "adamw", "sgd", "rmsprop"] = "adam"
    learning_rate: float = Field(default=0.001, gt=0.0)  # Adam's default, as in the lecture
    schedule: ScheduleConfig | None = None  # null: a constant learning rate
    # Labels are one-hot, as in the lecture (to_categorical).
    loss: Literal["categorical_crossentropy"] = "categorical_crossentropy"
    metrics: list[Literal["accuracy"]] = Field(default_factory=lambda: ["accuracy"])
    # "auto" uses what helps on the hardware found (see model.accelerator_plan): on a GPU, XLA,
    # 32 steps per call and float16 compute (with tensor cores); on a CPU, bfloat16 compute
    # where it has AMX units, and no XLA (it made an epoch 5x slower on a 2-core CPU).
    jit_compile: Literal["auto"] | bool = "auto"
    steps_per_execution: Literal["auto"] | Annotated[int, Field(ge=1)] = "auto"
    mixed_precision: Literal["auto"] | bool = "auto"


Monitor = Literal["val_loss", "val_accuracy", "loss", "accuracy"]


class EarlyStoppingConfig(_Section):
    """Stop when `monitor` has not improved for `patience` epochs."""

    monitor: Monitor = "val_loss"
    patience: int = Field(default=3, ge=0)
    min_delta: float = Field(default=0.0, ge=0.0)
    restore_best_weights: bool = True  # end with the best epoch's weights, not the last


class CheckpointConfig(_Section):
    """Keep the best model by `monitor` as best.h5 in the run folder, updated each epoch."""

    monitor: Monitor = "val_accuracy"


class TrainingConfig(_Section):
    epochs: int = Field(default=1, ge=1)
    batch_size: int = Field(default=128, ge=1)
    # None: a fresh seed each run, written to run.json so the run can be repeated.
    seed: int | None = Field(default=None, ge=0)
    # The lecture validates on the test set after each epoch; "none" skips that.
    validation: Literal["test", "none"] = "test"
    shuffle: bool = True
    early_stopping: EarlyStoppingConfig | None = None  # null: off
    checkpoint: CheckpointConfig | None = None  # null: off
    # tf.distribute: "mirrored" trains on all local GPUs (no GPU: `cpu_devices` logical CPU
    # devices); "multi_worker" on the cluster in TF_CONFIG, with `cnn train` run on each worker.
    # batch_size stays the global batch, shared among the replicas.
    distribution: Literal["none", "mirrored", "multi_worker"] = "none"
    cpu_devices: int = Field(default=2, ge=1)
    # Seconds a worker waits on the others (joining, each collective, heartbeats) before it
    # stops with an error instead of hanging; a step on this model takes well under a second.
    collective_timeout: float = Field(default=120.0, gt=0)

    @model_validator(mode="after")
    def _monitors_need_validation(self) -> "TrainingConfig":
        for name in ("early_stopping", "checkpoint"):
            section = getattr(self, name)
            if section and section.monitor.startswith("val_") and self.validation == "none":
                raise ValueError(f"{name}.monitor {section.monitor!r} needs validation data, but "
                                 "validation is 'none'; monitor 'loss' or 'accuracy' instead")
        return self


class TensorBoardConfig(_Section):
    enabled: bool = True
    log_dir: str = "logs/fit"
    # Weight histograms every N epochs (0: none); the lecture used 1.
    histogram_freq: int = Field(default=1, ge=0)
    # Loss and accuracy every N batches too: with 1 epoch, epoch-level curves are single dots.
    update_freq: int = Field(default=50, ge=1)
    write_graph: bool = True


class OutputConfig(_Section):
    model_path: str = "models/digits_recognition_cnn.h5"  # the lecture's name

    @field_validator("model_path")
    @classmethod
    def _model_suffix(cls, value: str) -> str:
        if Path(value).suffix not in (".h5", ".keras"):
            raise ValueError(f"expected a file name ending in .h5 or .keras, got {value!r}")
        return value


class Config(_Section):
    data: DataConfig = Field(default_factory=DataConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    compile: CompileConfig = Field(default_factory=CompileConfig)
    training: TrainingConfig = Field(default_factory=TrainingConfig)
    tensorboard: TensorBoardConfig = Field(default_factory=TensorBoardConfig)
    output: OutputConfig = Field(default_factory=OutputConfig)

    @model_validator(mode="after")
    def _distribution_runs_float32(self) -> "Config":
        if self.training.distribution != "none" and self.compile.mixed_precision is True:
            raise ValueError(f"compile.mixed_precision: true does not work with "
                             f"training.distribution {self.training.distribution!r} (Keras's loss "
                             "scaling fails under tf.distribute); set it to auto or false")
        return self

    def to_dict(self) -> dict[str, Any]:
        """Plain values (lists, not tuples), ready for YAML or JSON."""
        return self.model_dump(mode="json")


# --- loading ----------------------------------------------------------------------------------


class _Loader(yaml.SafeLoader):
    """YAML 1.1 reads `1e-4` as a string; learning rates are written that way, so read floats."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
    |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
    |\.[0-9_]+(?:[eE][-+]?[0-9]+)?
    |[-+]?\.(?:inf|Inf|INF)
    |\.(?:nan|NaN|NAN))$""", re.X),
    list("-+0123456789."),
)


def _yaml(text: str):
    return yaml.load(text, Loader=_Loader)  # noqa: S506 - a SafeLoader subclass


def default_config_path() -> Path:
    """The lecture's config, shipped inside the package so `cnn train` works from any folder."""
    return Path(str(resources.files("cnn_mnist") / "configs" / DEFAULT_CONFIG_NAME))


def shipped_configs() -> list[str]:
    """Names of the configs that ship with the package (`--config speedrun`)."""
    return sorted(p.stem for p in default_config_path().parent.glob("*.yaml"))


def resolve_config_path(path: str | Path | None) -> Path:
    """A file path, or the name of a shipped config; the default config if None."""
    if not path:
        return default_config_path()
    path = Path(path)
    shipped = default_config_path().parent / f"{path.stem}.yaml"
    if not path.exists() and path.parent == Path(".") and shipped.is_file():
        return shipped
    return path


def read_yaml(path: str | Path) -> dict[str, Any]:
    """Read a config file into a dict; a missing file or broken YAML is a ConfigError."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path} (pass a YAML file to --config, or one "
                          f"of the shipped configs: {', '.join(shipped_configs())})")
    try:
        raw = _yaml(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or "not valid YAML"
        raise ConfigError(f"{path}: broken YAML{where}: {problem}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read config file {path}: {exc}") from None
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of sections (data, model, ...), "
                          f"got {type(raw).__name__}")
    return raw


def parse_set(item: str) -> tuple[str, Any]:
    """`key.path=value` -> (key path, YAML-parsed value)."""
    key, sep, text = item.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"--set {item!r}: expected KEY.PATH=VALUE, for example "
                          "--set training.epochs=2 or --set model.layers[3].rate=0.3")
    try:
        value = _yaml(text) if text.strip() else None
    except yaml.YAMLError:
        value = text  # not YAML: take it as a string and let the schema judge it
    return key.strip(), value


def _split_key(key: str) -> list[str | int]:
    parts: list[str | int] = []
    for part in key.split("."):
        name, _, rest = part.partition("[")
        if name:
            parts.append(name)
        while rest:
            index, _, rest = rest.partition("]")
            if not index.isdigit():
                raise ConfigError(f"--set {key}: bad list index [{index}] (expected [0], [1], ...)")
            parts.append(int(index))
            rest = rest.removeprefix("[")
    return parts


def apply_override(raw: dict[str, Any], key: str, value: Any) -> None:
    """Set `key` (like `model.layers[3].rate`) in the raw config dict, creating sections."""
    parts = _split_key(key)
    node: Any = raw
    for depth, part in enumerate(parts):
        last = depth == len(parts) - 1
        where = _format_loc(parts[: depth + 1])
        if isinstance(part, int):
            if not isinstance(node, list):
                raise ConfigError(f"--set {key}: {_format_loc(parts[:depth]) or 'config'} is not a list")
            if part >= len(node):
                raise ConfigError(f"--set {key}: {where} is out of range "
                                  f"(the list has {len(node)} items: 0 to {len(node) - 1})")
        elif not isinstance(node, dict):
            raise ConfigError(f"--set {key}: {_format_loc(parts[:depth])} is not a section")
        if last:
            node[part] = value
        else:
            if isinstance(part, str) and part not in node:
                node[part] = [] if isinstance(parts[depth + 1], int) else {}
            node = node[part]


def _format_loc(loc: list[str | int] | tuple) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _clean_loc(loc: tuple) -> list[str | int]:
    """Drop the tags pydantic inserts for unions (layer type names, 'tuple[int, int]', ...)."""
    clean: list[str | int] = []
    for i, part in enumerate(loc):
        after_index = i > 0 and isinstance(loc[i - 1], int)
        if isinstance(part, str) and (
            (after_index and part in LAYER_NAMES) or "[" in part
            or part in ("none", "bool", "int", "constrained-int", "float")
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
        field = cls.model_fields.get(part) if cls else None
        annotation = field.annotation if field else None
        cls = annotation if isinstance(annotation, type) and issubclass(annotation, BaseModel) else None
    return cls


def _describe_error(err: dict[str, Any], raw: dict[str, Any]) -> str:
    loc = _clean_loc(err["loc"])
    where = _format_loc(loc) or "config"
    kind = err["type"]
    given = err.get("input")
    if kind == "extra_forbidden":
        cls = _section_at(loc, raw)
        valid = [k for k in cls.model_fields if k != "type"] if cls else []
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
        msg = f"{where}.type: unknown layer type {got!r}" if got else f"{where}: missing 'type'"
        if hint:
            msg += f" (did you mean '{hint[0]}'?)"
        return msg + f"; valid types: {', '.join(LAYER_NAMES)}"
    message = err["msg"].removeprefix("Value error, ")
    if kind == "missing":
        return f"{where}: required key is missing"
    if kind == "literal_error":
        return f"{where}: {message}, got {given!r}"
    if kind.endswith("_type") or kind.startswith(("greater", "less", "too_")):
        return f"{where}: {message}, got {given!r} ({type(given).__name__})"
    return f"{where}: {message}"


def _join(key: str, messages: list[str]) -> str:
    """`key: Input should be 'auto' or a valid boolean, got 'maybe'` from one line per member."""
    if len(messages) == 1 or not all(", got " in m for m in messages):
        return f"{key}: {'; '.join(messages)}"
    wants = [m.split(", got ")[0].removeprefix("Input should be ") for m in messages]
    return f"{key}: expected {' or '.join(dict.fromkeys(wants))}, got {messages[0].split(', got ')[1]}"


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
        lines = [_join(key, messages) for key, messages in by_key.items()]
        # The first line is the one a user reads; list the rest below it.
        head = f"invalid {source}: {lines[0]}"
        if len(lines) > 1:
            head += "\n" + "\n".join(f"  also: {line}" for line in lines[1:])
        raise ConfigError(head) from None


def load_config(path: str | Path | None = None, overrides: dict[str, Any] | None = None,
                sets: list[str] | tuple[str, ...] = ()) -> Config:
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


def read_tf_config(environ: Mapping[str, str] | None = None) -> dict:
    """The cluster from `TF_CONFIG`, checked: a clear error instead of a hang or a traceback."""
    raw = (os.environ if environ is None else environ).get("TF_CONFIG")
    example = ('{"cluster": {"worker": ["host1:12345", "host2:12345"]}, '
               '"task": {"type": "worker", "index": 0}}')
    if not raw:
        raise ConfigError("training.distribution 'multi_worker' needs the cluster in the "
                          f"TF_CONFIG environment variable, for example:\n  TF_CONFIG='{example}'")
    try:
        spec = json.loads(raw)
    except ValueError as exc:
        raise ConfigError(f"TF_CONFIG is not valid JSON ({exc}); expected for example "
                          f"'{example}'") from None
    cluster = spec.get("cluster") if isinstance(spec, dict) else None
    task = spec.get("task") if isinstance(spec, dict) else None
    if not isinstance(cluster, dict) or not cluster or not all(
            isinstance(v, list) and v and all(isinstance(a, str) and ":" in a for a in v)
            for v in cluster.values()):
        raise ConfigError("TF_CONFIG's 'cluster' must map job names ('chief', 'worker') to lists "
                          f"of 'host:port' addresses; got {cluster!r}")
    unknown = sorted(set(cluster) - {"chief", "worker"})
    if unknown:
        raise ConfigError(f"TF_CONFIG's cluster has job(s) {unknown}; multi_worker training uses "
                          "only 'chief' (at most one) and 'worker'")
    if len(cluster.get("chief", [])) > 1:
        raise ConfigError(f"TF_CONFIG names {len(cluster['chief'])} chiefs; expected at most one")
    if not isinstance(task, dict) or task.get("type") not in cluster \
            or not isinstance(task.get("index"), int) or isinstance(task.get("index"), bool) \
            or not 0 <= task["index"] < len(cluster[task["type"]]):
        raise ConfigError(f"TF_CONFIG's 'task' must name this process's job and index in the "
                          f"cluster, for example {{\"type\": \"worker\", \"index\": 0}}; got "
                          f"{task!r} for jobs { {k: len(v) for k, v in cluster.items()} }")
    return spec


def chief_task(spec: dict) -> bool:
    """Whether TF_CONFIG's task is the chief: the 'chief' job if there is one, else worker 0
    (TensorFlow's rule). The chief alone writes what the user sees."""
    cluster, task = spec["cluster"], spec["task"]
    chief = ("chief", 0) if "chief" in cluster else ("worker", 0)
    return (task["type"], task["index"]) == chief


def check_shapes(config: Config) -> None:
    """Shapes checked before building: an empty output is an error, a misfit a warning."""
    from cnn_mnist.shapes import infer  # shapes imports this module

    _, warnings = infer(config.model)
    for warning in warnings:
        log.warning("%s", warning)
