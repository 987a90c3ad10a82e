"""The typed config schema: every key, its type and its default, in one place.

A config has six sections: data, model, compile, training, tensorboard and output, and an
optional seventh, sweep, the search that `cnn sweep` runs over the other six. Sections are
strict and frozen: unknown keys, wrong types and out-of-range values are rejected, and
`config.py` turns pydantic's errors into messages with the key path
(for example `model.layers[2].pool_size`). `configs/*.yaml` only hold values.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator

from cnn_mnist import paths
from cnn_mnist.datasets import CLASS_NAMES, default_class_names

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
    return pair


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
# Written out (not Union[LAYER_TYPES]) so that a type checker can read it.
Layer = Annotated[Union[Conv2D, MaxPooling2D, AveragePooling2D, Dropout, Flatten,
                        GlobalAveragePooling2D, BatchNormalization, Dense],
                  Field(discriminator="type")]


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
    # None: the dataset's variable ($CNN_MNIST_DATA, $CNN_FASHION_DATA), else Keras's
    # download-and-cache (a custom dataset needs a path).
    path: str | None = None
    # mnist and fashion_mnist are checked by checksum; custom is any 28x28 ten-class set.
    dataset: Literal["mnist", "fashion_mnist", "custom"] = "mnist"
    # Ten names, for label 0 to 9: fixed for mnist (the digits) and fashion_mnist; a custom
    # dataset's default is the digits.
    class_names: list[str] | None = None
    # The lecture fed raw 0-255 pixels (0.9777 after 1 epoch); scaling to [0, 1] trains better.
    normalize: bool = True
    # Take the first N images, for quick runs.
    limit_train: int | None = Field(default=None, ge=1)
    limit_test: int | None = Field(default=None, ge=1)

    @field_validator("class_names")
    @classmethod
    def _ten_names(cls, value: list[str] | None, info) -> list[str] | None:
        if value is None:
            return value
        if len(value) != 10 or len(set(value)) != 10 or not all(v.strip() for v in value):
            raise ValueError(f"expected 10 different names (label 0 to 9), got {value!r}")
        fixed = CLASS_NAMES.get(info.data.get("dataset", "mnist"))
        if fixed is not None and value != fixed:
            raise ValueError(f"the names of {info.data.get('dataset')} are fixed "
                             f"({', '.join(fixed)}); leave class_names out, or use dataset custom")
        return value

    @property
    def names(self) -> list[str]:
        """The class names: given, or the dataset's (the digits for a custom one)."""
        return list(self.class_names) if self.class_names else default_class_names(self.dataset)


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
    metrics: list[Literal["accuracy"]] = Field(default_factory=lambda: ["accuracy"])  # type: ignore[arg-type]
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
    log_dir: str = paths.LOG_DIR
    # Weight histograms every N epochs (0: none); the lecture used 1.
    histogram_freq: int = Field(default=1, ge=0)
    # Loss and accuracy every N batches too: with 1 epoch, epoch-level curves are single dots.
    update_freq: int = Field(default=50, ge=1)
    write_graph: bool = True
    # Once per epoch, in the Images tab: the first convolution's kernels, and every convolution's
    # feature maps for test digit `sample_index` (10, the lecture's example): the same pictures
    # as `cnn inspect`.
    feature_maps: bool = True
    sample_index: int = Field(default=10, ge=0)


class OutputConfig(_Section):
    model_path: str = paths.MODEL_PATH  # the lecture's name

    @field_validator("model_path")
    @classmethod
    def _model_suffix(cls, value: str) -> str:
        if Path(value).suffix not in (".h5", ".keras"):
            raise ValueError(f"expected a file name ending in .h5 or .keras, got {value!r}")
        return value


# --- the search `cnn sweep` runs -----------------------------------------------------------

Choice = Union[bool, int, float, str, None]  # what Optuna can store as a categorical choice


class SweepParameter(_Section):
    """One key path's search space: `values` to choose from, or a `low`..`high` range (both
    ends included; `log: true` samples its logarithm evenly; `type` int or float, by default
    int when both ends are integers)."""

    values: list[Choice] | None = Field(default=None, min_length=1)
    low: int | float | None = None
    high: int | float | None = None
    log: bool = False
    type: Literal["int", "float"] | None = None

    @model_validator(mode="after")
    def _values_or_range(self) -> "SweepParameter":
        ranged = self.low is not None or self.high is not None
        if (self.values is None) == (not ranged):
            raise ValueError("give either values: [...] or low and high")
        if self.values is not None:
            if self.log or self.type:
                raise ValueError("log and type go with low and high, not with values")
            return self
        if self.low is None or self.high is None:
            raise ValueError("a range needs both low and high")
        if not self.low < self.high:
            raise ValueError(f"low must be below high, got low {self.low!r}, high {self.high!r}")
        if self.log and self.low <= 0:
            raise ValueError(f"log: true needs low above 0, got {self.low!r}")
        if self.type == "int" and not all(isinstance(v, int) for v in (self.low, self.high)):
            raise ValueError("type: int needs integer low and high")
        return self

    @property
    def kind(self) -> str:
        """"values", "int" or "float"."""
        if self.values is not None:
            return "values"
        return self.type or ("int" if isinstance(self.low, int) and isinstance(self.high, int)
                             else "float")


class SweepConfig(_Section):
    """The search: each trial trains the rest of the config with the parameters' key paths
    (the same paths as --set) set to values drawn by `method`."""

    parameters: dict[str, SweepParameter] = Field(min_length=1)
    # The Keras log reported after each epoch (to the pruner). A trial's value is the final
    # model's test accuracy or loss for val_accuracy/val_loss (validation is on the test set),
    # the last epoch's value for accuracy/loss.
    metric: Monitor = "val_accuracy"
    goal: Literal["maximize", "minimize"] | None = None  # None: minimize a loss, else maximize
    # The study's total, counted over every process that joins it: trials that completed,
    # were pruned, failed or are running; not those interrupted.
    trials: int = Field(default=10, ge=1)
    method: Literal["tpe", "random", "grid"] = "tpe"  # grid: every combination of the values
    pruning: bool = True  # Optuna's median rule, after each epoch
    pruning_startup_trials: int = Field(default=2, ge=0)  # finished trials before it prunes

    @field_validator("parameters")
    @classmethod
    def _not_the_sweep(cls, value: dict[str, SweepParameter]) -> dict[str, SweepParameter]:
        for key in value:
            if key.split(".")[0].split("[")[0] not in Config.model_fields or \
                    key.startswith("sweep"):
                sections = ", ".join(k for k in Config.model_fields if k != "sweep")
                raise ValueError(f"{key!r} is not a key path in a section ({sections})")
        return value

    @model_validator(mode="after")
    def _grid_needs_values(self) -> "SweepConfig":
        ranged = [key for key, p in self.parameters.items() if p.values is None]
        if self.method == "grid" and ranged:
            raise ValueError(f"method grid needs values: [...] for every parameter; "
                             f"{', '.join(ranged)} has low/high")
        return self

    @property
    def direction(self) -> str:
        return self.goal or ("minimize" if self.metric.endswith("loss") else "maximize")


class Config(_Section):
    data: DataConfig = Field(default_factory=DataConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    compile: CompileConfig = Field(default_factory=CompileConfig)
    training: TrainingConfig = Field(default_factory=TrainingConfig)
    tensorboard: TensorBoardConfig = Field(default_factory=TensorBoardConfig)
    output: OutputConfig = Field(default_factory=OutputConfig)
    sweep: SweepConfig | None = None  # null: `cnn sweep` has nothing to search

    @model_validator(mode="after")
    def _distribution_runs_float32(self) -> "Config":
        if self.sweep is not None:
            _check_sweep(self)
        if self.training.distribution != "none" and self.compile.mixed_precision is True:
            raise ValueError(f"compile.mixed_precision: true does not work with "
                             f"training.distribution {self.training.distribution!r} (Keras's loss "
                             "scaling fails under tf.distribute); set it to auto or false")
        return self

    def to_dict(self) -> dict[str, Any]:
        """Plain values (lists, not tuples), ready for YAML or JSON; no `sweep` key unless
        there is a sweep (a run's config.yaml never has one)."""
        return self.model_dump(mode="json", exclude={"sweep"} if self.sweep is None else None)

    def with_values(self, values: dict[str, Any]) -> "Config":
        """A copy with `section.key` values replaced, e.g. {"training.seed": 7}; the values
        are the program's own, already valid (user input goes through config.load_config)."""
        sections: dict[str, dict[str, Any]] = {}
        for key, value in values.items():
            section, _, name = key.partition(".")
            sections.setdefault(section, {})[name] = value
        return self.model_copy(update={section: getattr(self, section).model_copy(update=update)
                                       for section, update in sections.items()})


def _check_sweep(config: Config) -> None:
    """A sweep's trials each train in this process, and its metric must be logged."""
    if config.sweep is None:
        return
    if config.sweep.metric.startswith("val_") and config.training.validation == "none":
        raise ValueError(f"sweep.metric {config.sweep.metric!r} needs validation data, but "
                         "training.validation is 'none'; use metric 'accuracy' or 'loss'")
    if config.training.distribution != "none":
        raise ValueError("a sweep trains each trial in its own process; set "
                         "training.distribution: none (run `cnn sweep` on several machines to "
                         "share a study instead)")
