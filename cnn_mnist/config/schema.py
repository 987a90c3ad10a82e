"""The typed config schema: every key, its type and its default, in one place.

A config has six sections: data, model, compile, training, tensorboard and output, and an
optional seventh, sweep, the search that `cnn sweep` runs over the other six. Sections are
strict and frozen: unknown keys, wrong types and out-of-range values are rejected, and
`config/load.py` turns pydantic's errors into messages with the key path
(for example `model.layers[2].pool_size`). `configs/*.yaml` only hold values.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator

from cnn_mnist.core import paths
from cnn_mnist.core.datasets import CLASS_NAMES, default_class_names
from cnn_mnist.core.errors import clipped, shown

# Upper bounds, so that a number too large to mean anything is the schema's error, not an
# overflow deep in NumPy or TensorFlow. A layer too large for memory is the memory guard's to
# refuse, with what it would need (stages/guards.py).
INT32_MAX = 2**31 - 1  # counts and sizes: TensorFlow's int32
SEED_MAX = 2**32 - 1  # NumPy's np.random.seed takes seeds below 2**32
MAX_SIDE = 4096  # an image's height, width or channels, and a window's side (MNIST's: 28)
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1  # a sweep's integers
Int64 = Annotated[int, Field(ge=INT64_MIN, le=INT64_MAX)]

Activation = Literal["relu", "sigmoid", "tanh", "softmax", "linear", "elu", "selu", "gelu", "swish"]
Padding = Literal["valid", "same"]


def _pair(value: Any) -> tuple[int, int]:
    """Keras accepts `3` or `[3, 3]` for a kernel, stride or pool size; so do we."""
    if isinstance(value, bool) or not isinstance(value, (int, list, tuple)):
        raise ValueError(f"expected a positive integer or a list of two, got {shown(value)}")
    pair = (value, value) if isinstance(value, int) else tuple(value)
    if len(pair) != 2 or not all(isinstance(v, int) and not isinstance(v, bool) for v in pair):
        raise ValueError(f"expected a positive integer or a list of two, got {shown(value)}")
    if min(pair) < 1:
        raise ValueError(f"expected sizes of at least 1, got {shown(value)}")
    if max(pair) > MAX_SIDE:
        raise ValueError(f"expected sizes of at most {MAX_SIDE}, got {shown(value)}")
    return pair


# The JSON Schema says what a file may hold (3 or [3, 3]), not the pair it becomes.
Pair = Annotated[
    tuple[int, int],
    BeforeValidator(
        _pair,
        json_schema_input_type=Union[
            Annotated[int, Field(ge=1, le=MAX_SIDE)],
            Annotated[
                list[Annotated[int, Field(ge=1, le=MAX_SIDE)]], Field(min_length=2, max_length=2)
            ],
        ],
    ),
]


Side = Annotated[int, Field(ge=1, le=MAX_SIDE)]


def _as_tuple(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


class _Section(BaseModel):
    # strict: "32" is not 32, and true is not 1. forbid: a misspelt key is an error. No .nan
    # or .inf: no setting means anything by them (a NaN passes every comparison's "not").
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, allow_inf_nan=False)


def _type(name: str) -> Any:
    return Field(description=f"The layer: Keras's `keras.layers.{name}`.")


_ACTIVATION = "Keras's activation by name; null: none (linear)."
_PADDING = (
    "`valid`: no padding (P = 0); `same`: zeros around the input so that the output is "
    "ceil(W / S) wide."
)
_POOL_STRIDES = "The step between windows: an integer or [rows, columns]; null: pool_size."


# --- layers: Keras's own names, arguments and defaults ---------------------------------------


class Conv2D(_Section):
    """A 2D convolution: `filters` kernels slid over the input, each giving one feature map."""

    type: Literal["Conv2D"] = _type("Conv2D")
    filters: int = Field(ge=1, le=INT32_MAX, description="Kernels, so output channels.")
    kernel_size: Pair = Field(description="The kernel's height and width: 3 or [3, 3].")
    strides: Pair = Field(
        default=(1, 1), description="The step between kernel positions: 1 or [rows, columns]."
    )
    padding: Padding = Field(default="valid", description=_PADDING)
    activation: Activation | None = Field(default=None, description=_ACTIVATION)


class MaxPooling2D(_Section):
    """Keeps the largest value of each window: smaller maps that tolerate small shifts."""

    type: Literal["MaxPooling2D"] = _type("MaxPooling2D")
    pool_size: Pair = Field(default=(2, 2), description="The window: 2 or [rows, columns].")
    strides: Pair | None = Field(default=None, description=_POOL_STRIDES)
    padding: Padding = Field(default="valid", description=_PADDING)


class AveragePooling2D(_Section):
    """Keeps the mean of each window."""

    type: Literal["AveragePooling2D"] = _type("AveragePooling2D")
    pool_size: Pair = Field(default=(2, 2), description="The window: 2 or [rows, columns].")
    strides: Pair | None = Field(default=None, description=_POOL_STRIDES)
    padding: Padding = Field(default="valid", description=_PADDING)


class Dropout(_Section):
    """Sets a random fraction of its inputs to 0 while training (not when predicting)."""

    type: Literal["Dropout"] = _type("Dropout")
    rate: float = Field(ge=0.0, lt=1.0, description="The fraction of inputs dropped.")


class Flatten(_Section):
    """Lays the feature maps out as one vector, for the Dense layers."""

    type: Literal["Flatten"] = _type("Flatten")


class GlobalAveragePooling2D(_Section):
    """The mean of each feature map: one value per channel."""

    type: Literal["GlobalAveragePooling2D"] = _type("GlobalAveragePooling2D")


class BatchNormalization(_Section):
    """Normalizes each channel by the batch's mean and variance (their running averages when
    predicting)."""

    type: Literal["BatchNormalization"] = _type("BatchNormalization")
    momentum: float = Field(
        default=0.99,
        gt=0.0,
        lt=1.0,
        description="How slowly the running mean and variance follow the "
        "batches; 0.9 settles within a few dozen steps, Keras's "
        "0.99 needs a few hundred.",
    )
    epsilon: float = Field(
        default=0.001, gt=0.0, description="Added to the variance, so that it never divides by 0."
    )


class Dense(_Section):
    """A fully connected layer: every input to every unit. The last one has 10 units."""

    type: Literal["Dense"] = _type("Dense")
    units: int = Field(ge=1, le=INT32_MAX, description="Outputs; the model's last layer needs 10.")
    activation: Activation | None = Field(default=None, description=_ACTIVATION)


LAYER_TYPES = (
    Conv2D,
    MaxPooling2D,
    AveragePooling2D,
    Dropout,
    Flatten,
    GlobalAveragePooling2D,
    BatchNormalization,
    Dense,
)
LAYER_NAMES = tuple(cls.__name__ for cls in LAYER_TYPES)
# Written out (not Union[LAYER_TYPES]) so that a type checker can read it.
Layer = Annotated[
    Union[
        Conv2D,
        MaxPooling2D,
        AveragePooling2D,
        Dropout,
        Flatten,
        GlobalAveragePooling2D,
        BatchNormalization,
        Dense,
    ],
    Field(discriminator="type"),
]
# A new layer type: a class above (Keras's own name and arguments, each with a description),
# added to LAYER_TYPES and to Layer, and a shape rule in shapes.RULES.


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


class AugmentConfig(_Section):
    """Random changes to every training batch, drawn anew each epoch (the test images are never
    changed); each is off at 0, and all are off by default, as in the lecture. The draws are a
    function of training.seed, the epoch and the batch alone, so resumed and distributed runs
    see the same images as one uninterrupted run."""

    shift: float = Field(
        default=0.0,
        ge=0.0,
        le=14.0,
        description=(
            "The largest shift of the digit, in pixels, up or down and left or right (each drawn "
            "from -shift to shift); 0: none."
        ),
    )
    rotation: float = Field(
        default=0.0,
        ge=0.0,
        le=180.0,
        description=(
            "The largest rotation, in degrees, either way (drawn from -rotation to rotation); "
            "0: none."
        ),
    )
    zoom: float = Field(
        default=0.0,
        ge=0.0,
        lt=1.0,
        description=(
            "The largest change of size, as a fraction: the digit is scaled by a factor drawn from "
            "1 - zoom to 1 + zoom; 0: none."
        ),
    )
    thickness: float = Field(
        default=0.0,
        ge=0.0,
        le=1.0,
        description=(
            "The largest change of stroke width, in pixels on each side of a stroke: a 3x3 "
            "dilation (thicker) or erosion (thinner), blended in by a fraction drawn from "
            "-thickness to thickness; 0: none."
        ),
    )
    elastic_alpha: float = Field(
        default=0.0,
        ge=0.0,
        le=100.0,
        description=(
            "Elastic distortion (Simard et al., 2003): the strength alpha of a random displacement "
            "field (uniform noise in -1..1 per pixel, smoothed by a Gaussian of elastic_sigma "
            "pixels, times alpha); 34 with sigma 4 is the classic MNIST setting; 0: none."
        ),
    )
    elastic_sigma: float = Field(
        default=4.0,
        ge=1.0,
        le=8.0,
        description=(
            "The elastic distortion's smoothness: the Gaussian's standard deviation, in pixels "
            "(small: a jagged warp, large: a gentle bend)."
        ),
    )

    @property
    def active(self) -> bool:
        """Whether any augmentation is on (all off: the pipeline is the lecture's, unchanged)."""
        return bool(
            self.shift or self.rotation or self.zoom or self.thickness or self.elastic_alpha
        )


class DataConfig(_Section):
    """Where the images come from and how they are prepared."""

    path: str | None = Field(
        default=None,
        description="A folder of the four IDX files (gzipped or not) or an .npz with x_train, "
        "y_train, x_test, y_test. null: $CNN_MNIST_DATA ($CNN_FASHION_DATA for "
        "fashion_mnist), else Keras's download, cached in ~/.keras/datasets/ (a "
        "custom dataset needs a path). `--data PATH` sets it.",
    )
    dataset: Literal["mnist", "fashion_mnist", "custom"] = Field(
        default="mnist",
        description="mnist and fashion_mnist are checked by the checksum of every file's "
        "content; custom is any set of 28x28 grayscale images in ten classes, "
        "checked for its structure only.",
    )
    class_names: list[str] | None = Field(
        default=None,
        description="Ten different names, for labels 0 to 9, used wherever a class is named. "
        "Fixed for mnist (the digits) and fashion_mnist (T-shirt/top ... Ankle "
        "boot); null: the dataset's, the digits for custom.",
    )
    normalize: bool = Field(
        default=True,
        description="Scale pixels to [0, 1]. The lecture fed raw 0-255 pixels (0.9777 after "
        "one epoch); false reproduces that, and the model file remembers it.",
    )
    limit_train: int | None = Field(
        default=None,
        ge=1,
        le=INT32_MAX,
        description="Train on the first N images only (quick runs); null: all of them.",
    )
    limit_test: int | None = Field(
        default=None,
        ge=1,
        le=INT32_MAX,
        description="Validate and evaluate on the first N test images only; null: all of them.",
    )
    augment: AugmentConfig = Field(
        default_factory=AugmentConfig,
        description=(
            "Random shifts, rotations, zooms, stroke thickness and elastic distortion of the "
            "training images; all off by default (docs/guides/augmentation.md)."
        ),
    )

    @field_validator("class_names")
    @classmethod
    def _ten_names(cls, value: list[str] | None, info) -> list[str] | None:
        if value is None:
            return value
        if len(value) != 10 or len(set(value)) != 10 or not all(v.strip() for v in value):
            raise ValueError(f"expected 10 different names (label 0 to 9), got {shown(value)}")
        fixed = CLASS_NAMES.get(info.data.get("dataset", "mnist"))
        if fixed is not None and value != fixed:
            raise ValueError(
                f"the names of {info.data.get('dataset')} are fixed "
                f"({', '.join(fixed)}); leave class_names out, or use dataset custom"
            )
        return value

    @property
    def names(self) -> list[str]:
        """The class names: given, or the dataset's (the digits for a custom one)."""
        return list(self.class_names) if self.class_names else default_class_names(self.dataset)


class ModelConfig(_Section):
    """The network: a stack of Keras layers, checked shape by shape before it is built."""

    name: str = Field(default="digits_recognition_cnn", description="The Keras model's name.")
    input_shape: Annotated[tuple[Side, Side, Side], BeforeValidator(_as_tuple)] = Field(
        default=(28, 28, 1), description="Height, width and channels of one image."
    )
    layers: list[Layer] = Field(
        default_factory=_lecture_layers,
        min_length=1,
        description="Keras layers in order, each a `type` and its Keras arguments (the "
        "layers below). The default is the lecture's eight layers, 1,199,882 "
        "parameters. The last layer must give 10 outputs; a layer whose output "
        "would be empty is an error, a window that does not tile its input exactly "
        "a warning. `cnn summary` shows what a stack builds.",
    )


class ScheduleConfig(_Section):
    """How the learning rate moves over all training steps; `compile.learning_rate` is its peak.

    one_cycle: rises linearly from learning_rate x start_factor to learning_rate over the first
    `warmup` of the steps, then falls along a cosine to learning_rate x end_factor.
    cosine: falls along a cosine from learning_rate to learning_rate x end_factor.
    Both are Keras's CosineDecay, so a saved model loads with plain Keras.
    """

    type: Literal["one_cycle", "cosine"] = Field(
        description="one_cycle: up, then down along a cosine; cosine: down along a cosine."
    )
    warmup: float = Field(
        default=0.25,
        ge=0.0,
        lt=1.0,
        description="one_cycle: the fraction of all steps spent rising.",
    )
    start_factor: float = Field(
        default=0.04,
        gt=0.0,
        le=1.0,
        description="one_cycle: the first step's rate, as a fraction of learning_rate.",
    )
    end_factor: float = Field(
        default=0.0,
        ge=0.0,
        le=1.0,
        description="The last step's rate, as a fraction of learning_rate.",
    )


class CompileConfig(_Section):
    """The optimizer, the loss, and how TensorFlow runs the steps. Each "auto" is decided by
    the hardware found (model.accelerator_plan); run.json's `accelerator` records the choice."""

    optimizer: Literal["adam", "adamw", "sgd", "rmsprop"] = Field(
        default="adam", description="Keras's optimizer by name; the lecture used Adam."
    )
    learning_rate: float = Field(
        default=0.001,
        gt=0.0,
        description="Adam's default, as in the lecture; with a "
        "schedule, its peak. `--learning-rate` sets it.",
    )
    schedule: ScheduleConfig | None = Field(
        default=None, description="How the learning rate moves over the steps; null: constant."
    )
    beta_1: float | None = Field(
        default=None,
        gt=0.0,
        lt=1.0,
        description=(
            "Adam's and AdamW's decay of the gradient's running mean; null: Keras's 0.9. Lower "
            "(0.7) follows the gradient sooner: the one-epoch speed-run uses it."
        ),
    )
    beta_2: float | None = Field(
        default=None,
        gt=0.0,
        lt=1.0,
        description=(
            "Adam's and AdamW's decay of the squared gradient's running mean; null: Keras's 0.999."
        ),
    )
    label_smoothing: float = Field(
        default=0.0,
        ge=0.0,
        lt=1.0,
        description=(
            "Mix each one-hot label with the uniform distribution by this much (Keras's "
            "CategoricalCrossentropy(label_smoothing)); 0: the lecture's plain loss."
        ),
    )
    loss: Literal["categorical_crossentropy"] = Field(
        default="categorical_crossentropy",
        description="On one-hot labels, as in the lecture (to_categorical).",
    )
    metrics: list[Literal["accuracy"]] = Field(
        default_factory=lambda: ["accuracy"],  # type: ignore[arg-type]
        description="Reported after each epoch.",
    )
    jit_compile: Literal["auto"] | bool = Field(
        default="auto",
        description="XLA. auto: Keras's rule, on with a GPU, off on CPUs (it made an epoch 5x "
        "slower on a 2-core CPU) and under training.distribution.",
    )
    steps_per_execution: Literal["auto"] | Annotated[int, Field(ge=1, le=INT32_MAX)] = Field(
        default="auto",
        description="Training steps per call into TensorFlow. auto: 32 with a GPU, 1 on CPUs.",
    )
    mixed_precision: Literal["auto"] | bool = Field(
        default="auto",
        description="16-bit compute with float32 weights and softmax: float16 with loss "
        "scaling on GPUs, bfloat16 on CPUs. auto: on when every GPU has tensor "
        "cores (compute capability 7.0+) or the CPU computes bfloat16 natively "
        "(amx_bf16 or avx512_bf16), off otherwise and under training.distribution. "
        "The model is saved in float32.",
    )


Monitor = Literal["val_loss", "val_accuracy", "loss", "accuracy"]


class EarlyStoppingConfig(_Section):
    """Stop when `monitor` has not improved for `patience` epochs."""

    monitor: Monitor = Field(default="val_loss", description="The Keras log to watch.")
    patience: int = Field(
        default=3, ge=0, le=INT32_MAX, description="Epochs without improvement before it stops."
    )
    min_delta: float = Field(
        default=0.0, ge=0.0, description="The least change that counts as an improvement."
    )
    restore_best_weights: bool = Field(
        default=True, description="End with the best epoch's weights, not the last epoch's."
    )


class CheckpointConfig(_Section):
    """Keep the best model by `monitor` as best.h5 in the run folder, updated each epoch."""

    monitor: Monitor = Field(
        default="val_accuracy", description="The Keras log by which an epoch is the best."
    )


class TrainingConfig(_Section):
    """How long and on what the model trains."""

    epochs: int = Field(
        default=1, ge=1, le=1_000_000, description="Passes over the training images (`--epochs`)."
    )
    batch_size: int = Field(
        default=128,
        ge=1,
        le=2**20,
        description="Images per gradient update (`--batch-size`); under "
        "training.distribution the global batch, shared among "
        "the replicas.",
    )
    seed: int | None = Field(
        default=None,
        ge=0,
        le=SEED_MAX,
        description="Same seed, config and machine: same metrics "
        "(`--seed`). null: a fresh seed each run, written to "
        "run.json so the run can be repeated.",
    )
    validation: Literal["test", "none"] = Field(
        default="test",
        description="test: validate on the test set after each epoch, as the lecture does; "
        "none: skip it (the test set is evaluated once, after training).",
    )
    shuffle: bool = Field(
        default=True,
        description="Shuffle the training images each epoch "
        "(an order drawn from the seed and the "
        "epoch number).",
    )
    early_stopping: EarlyStoppingConfig | None = Field(
        default=None, description="Stop when `monitor` stops improving; null: off."
    )
    checkpoint: CheckpointConfig | None = Field(
        default=None,
        description="Keep the best epoch's model as best.h5 in the run folder; null: off.",
    )
    distribution: Literal["none", "mirrored", "multi_worker"] = Field(
        default="none",
        description="tf.distribute (`--distribution`). mirrored: all local GPUs, one replica "
        "each (no GPU: cpu_devices logical CPU devices); multi_worker: the cluster "
        "in $TF_CONFIG, with `cnn train` run on every worker.",
    )
    cpu_devices: int = Field(
        default=2, ge=1, le=1024, description="Replicas for mirrored on a machine without GPUs."
    )
    collective_timeout: float = Field(
        default=120.0,
        gt=0,
        le=7 * 86_400,
        description="Seconds a worker waits on the others (joining, each exchange) before it "
        "stops with an error instead of hanging; a step on this model takes well "
        "under a second. Heartbeats have their own fixed 60 s, the same on every "
        "worker.",
    )

    @model_validator(mode="after")
    def _monitors_need_validation(self) -> "TrainingConfig":
        for name in ("early_stopping", "checkpoint"):
            section = getattr(self, name)
            if section and section.monitor.startswith("val_") and self.validation == "none":
                raise ValueError(
                    f"{name}.monitor {section.monitor!r} needs validation data, but "
                    "validation is 'none'; monitor 'loss' or 'accuracy' instead"
                )
        return self


def _batches(value: Any) -> Any:
    """A batch number (0: off) or [first, last], checked before the types: one message."""
    numbers = value if isinstance(value, list) and len(value) == 2 else [value]
    if all(isinstance(v, int) and not isinstance(v, bool) for v in numbers) and (
        (len(numbers) == 1 and 0 <= value <= INT32_MAX)
        or (len(numbers) == 2 and 1 <= value[0] <= value[1] <= INT32_MAX)
    ):
        return value
    raise ValueError(
        f"expected a batch number (0: off) or [first, last] with "
        f"1 <= first <= last <= {INT32_MAX}, got {shown(value)}"
    )


Batches = Annotated[
    Union[
        Annotated[int, Field(ge=0, le=INT32_MAX)],
        Annotated[
            list[Annotated[int, Field(ge=1, le=INT32_MAX)]], Field(min_length=2, max_length=2)
        ],
    ],
    BeforeValidator(_batches),
]


class TensorBoardConfig(_Section):
    """What each run logs for TensorBoard (`cnn tensorboard`)."""

    enabled: bool = Field(default=True, description="Write TensorBoard logs.")
    log_dir: str = Field(
        default=paths.LOG_DIR,
        description="One folder per run inside it, with its run.json and "
        "model; `cnn runs` and `cnn train --resume` read it.",
    )
    histogram_freq: int = Field(
        default=1,
        ge=0,
        le=INT32_MAX,
        description="Weight histograms every N epochs (0: none); the lecture used 1.",
    )
    update_freq: int = Field(
        default=50,
        ge=1,
        le=INT32_MAX,
        description="Loss and accuracy every N batches too (batch_loss, "
        "batch_accuracy): with one epoch, epoch-level curves "
        "are single dots.",
    )
    write_graph: bool = Field(default=True, description="The model graph (Graphs tab).")
    feature_maps: bool = Field(
        default=True,
        description="Once per epoch, in the Images tab: the first convolution's kernels, and "
        "every convolution's feature maps for test digit sample_index, the same "
        "pictures as `cnn inspect`.",
    )
    sample_index: int = Field(
        default=10,
        ge=0,
        le=INT32_MAX,
        description="The test digit whose feature maps are logged (10, the lecture's example).",
    )
    profile_batch: Batches = Field(
        default=0,
        description=(
            "Capture these training batches with TensorFlow's profiler, for TensorBoard's Profile "
            "tab (tensorboard-plugin-profile): a batch number, or [first, last]; 0: off. `cnn train "
            "--profile` sets [10, 15], after the first steps' tracing."
        ),
    )


class OutputConfig(_Section):
    """Where the trained model goes."""

    model_path: str = Field(
        default=paths.MODEL_PATH,
        description="The stable path of the newest finished run's model (the lecture's name), "
        "ending in .h5 or .keras (`--model-path`); each run's own copy stays in its "
        "run folder, and a LiteRT export (.tflite) goes beside it.",
    )

    @field_validator("model_path")
    @classmethod
    def _model_suffix(cls, value: str) -> str:
        if Path(value).suffix not in (".h5", ".keras"):
            raise ValueError(f"expected a file name ending in .h5 or .keras, got {shown(value)}")
        return value


# --- the search `cnn sweep` runs -----------------------------------------------------------

Choice = Union[bool, Int64, float, str, None]  # what Optuna can store as a categorical choice


class SweepParameter(_Section):
    """One key path's search space: `values` to choose from, or a `low`..`high` range (both
    ends included; `log: true` samples its logarithm evenly; `type` int or float, by default
    int when both ends are integers)."""

    values: list[Choice] | None = Field(
        default=None, min_length=1, description="The choices: numbers, strings, booleans."
    )
    low: Int64 | float | None = Field(
        default=None, description="A range's lowest value (included)."
    )
    high: Int64 | float | None = Field(
        default=None, description="A range's highest value (included)."
    )
    log: bool = Field(
        default=False,
        description="Sample the range's logarithm evenly (low above 0), as for learning rates.",
    )
    type: Literal["int", "float"] | None = Field(
        default=None,
        description="A range of integers or floats; null: int when both ends are integers.",
    )

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
            raise ValueError(
                f"low must be below high, got low {shown(self.low)}, high {shown(self.high)}"
            )
        if self.log and self.low <= 0:
            raise ValueError(f"log: true needs low above 0, got {shown(self.low)}")
        if self.type == "int" and not all(isinstance(v, int) for v in (self.low, self.high)):
            raise ValueError("type: int needs integer low and high")
        return self

    @property
    def kind(self) -> str:
        """ "values", "int" or "float"."""
        if self.values is not None:
            return "values"
        return self.type or (
            "int" if isinstance(self.low, int) and isinstance(self.high, int) else "float"
        )


class SweepConfig(_Section):
    """The search: each trial trains the rest of the config with the parameters' key paths
    (the same paths as --set) set to values drawn by `method`."""

    parameters: dict[str, SweepParameter] = Field(
        min_length=1,
        description="Key path (as for --set, e.g. model.layers[3].rate; the defaults count "
        "too) -> its search space: {values: [...]} or {low, high}.",
    )
    metric: Monitor = Field(
        default="val_accuracy",
        description="The Keras log reported after each epoch (to the pruner). A trial's value "
        "is the final model's test accuracy or loss for val_accuracy/val_loss "
        "(validation is on the test set), the last epoch's value for "
        "accuracy/loss.",
    )
    goal: Literal["maximize", "minimize"] | None = Field(
        default=None, description="null: minimize a loss, maximize an accuracy."
    )
    trials: int = Field(
        default=10,
        ge=1,
        le=1_000_000,
        description="The study's total, counted over every process that joins "
        "it: trials that completed, were pruned, failed or are "
        "running; not those interrupted (`--trials`).",
    )
    method: Literal["tpe", "random", "grid"] = Field(
        default="tpe",
        description="tpe: Optuna's default (random for its first 10 trials); random; grid: "
        "every combination of the values, each once (trials at most).",
    )
    pruning: bool = Field(
        default=True,
        description="Optuna's median rule after each epoch: a trial worse "
        "than the median of earlier trials at the same epoch "
        "stops there.",
    )
    pruning_startup_trials: int = Field(
        default=2,
        ge=0,
        le=INT32_MAX,
        description="Trials that must finish before the median rule prunes.",
    )

    @field_validator("parameters")
    @classmethod
    def _not_the_sweep(cls, value: dict[str, SweepParameter]) -> dict[str, SweepParameter]:
        for key in value:
            if key.split(".")[0].split("[")[0] not in Config.model_fields or key.startswith(
                "sweep"
            ):
                sections = ", ".join(k for k in Config.model_fields if k != "sweep")
                raise ValueError(f"{shown(key)} is not a key path in a section ({sections})")
        return value

    @model_validator(mode="after")
    def _grid_needs_values(self) -> "SweepConfig":
        ranged = [key for key, p in self.parameters.items() if p.values is None]
        if self.method == "grid" and ranged:
            raise ValueError(
                f"method grid needs values: [...] for every parameter; "
                f"{clipped(', '.join(ranged), 120)} has low/high"
            )
        return self

    @property
    def direction(self) -> Literal["maximize", "minimize"]:
        return self.goal or ("minimize" if self.metric.endswith("loss") else "maximize")


def _doc(section: type[BaseModel]) -> str:
    """A section's docstring on one line: its description as a key of the config."""
    return " ".join((section.__doc__ or "").split())


class Config(_Section):
    """A cnn-mnist config (`cnn train --config FILE`): each key may be left out, for its
    default; `cnn config show` prints them all."""

    data: DataConfig = Field(default_factory=DataConfig, description=_doc(DataConfig))
    model: ModelConfig = Field(default_factory=ModelConfig, description=_doc(ModelConfig))
    compile: CompileConfig = Field(default_factory=CompileConfig, description=_doc(CompileConfig))
    training: TrainingConfig = Field(
        default_factory=TrainingConfig, description=_doc(TrainingConfig)
    )
    tensorboard: TensorBoardConfig = Field(
        default_factory=TensorBoardConfig, description=_doc(TensorBoardConfig)
    )
    output: OutputConfig = Field(default_factory=OutputConfig, description=_doc(OutputConfig))
    sweep: SweepConfig | None = Field(
        default=None,
        description="The search `cnn sweep` runs over the other "
        "sections; null: nothing to search (`cnn "
        "train` leaves it out).",
    )

    @model_validator(mode="after")
    def _distribution_runs_float32(self) -> "Config":
        if self.sweep is not None:
            _check_sweep(self)
        if self.training.distribution != "none" and self.compile.mixed_precision is True:
            raise ValueError(
                f"compile.mixed_precision: true does not work with "
                f"training.distribution {self.training.distribution!r} (Keras's loss "
                "scaling fails under tf.distribute); set it to auto or false"
            )
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
        return self.model_copy(
            update={
                section: getattr(self, section).model_copy(update=update)
                for section, update in sections.items()
            }
        )


def _check_sweep(config: Config) -> None:
    """A sweep's trials each train in this process, and its metric must be logged."""
    if config.sweep is None:
        return
    if config.sweep.metric.startswith("val_") and config.training.validation == "none":
        raise ValueError(
            f"sweep.metric {config.sweep.metric!r} needs validation data, but "
            "training.validation is 'none'; use metric 'accuracy' or 'loss'"
        )
    if config.training.distribution != "none":
        raise ValueError(
            "a sweep trains each trial in its own process; set "
            "training.distribution: none (run `cnn sweep` on several machines to "
            "share a study instead)"
        )
