"""Steps 3 and 4: build the network from the config's layer list, and compile it."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass

import keras

from cnn_mnist.config.schema import CompileConfig, ModelConfig

OPTIMIZERS = {
    "adam": keras.optimizers.Adam,
    "adamw": keras.optimizers.AdamW,
    "sgd": keras.optimizers.SGD,
    "rmsprop": keras.optimizers.RMSprop,
}


GPU_STEPS_PER_EXECUTION = 32  # a GPU step of this model is short: fewer Python round trips


@dataclass(frozen=True)
class Accelerator:
    """How to run on the hardware found: Keras's compile arguments and the layers' dtype."""

    device: str  # "cpu" or "gpu"
    jit_compile: bool | str  # "auto": Keras decides (XLA on a GPU, unless under tf.distribute)
    steps_per_execution: int
    dtype_policy: str  # "float32", "mixed_float16" (GPUs) or "mixed_bfloat16" (CPUs)
    reason: str = ""  # why this compute dtype, for the runtime line and run.json

    @property
    def mixed_precision(self) -> bool:
        return self.dtype_policy != "float32"

    def to_dict(self) -> dict:
        return asdict(self)


# CPU flags (as in /proc/cpuinfo) of instructions that compute in bfloat16 natively. Measured,
# one epoch of the lecture's model, float32 -> bfloat16: AMX (amx_bf16, Intel Xeon) 21.5 s ->
# 11 s; AVX-512 BF16 (avx512_bf16, AMD EPYC Zen 4) 34.7 s -> 24.1 s of training steps; AVX2
# only (AMD EPYC Zen 3) 25 s -> 230 s on 15,360 images: oneDNN emulates bfloat16 there, ten
# times slower. Same accuracy in all three (bench/RESULTS.md).
BF16_FLAGS = {"amx_bf16": "AMX", "avx512_bf16": "AVX-512 BF16"}


# ONEDNN_MAX_CPU_ISA values that keep oneDNN below AVX-512 (its bfloat16 kernels): bfloat16 is
# then emulated, as on a CPU without those instructions (how an AVX2-only CPU is emulated).
BELOW_AVX512 = {"SSE41", "AVX", "AVX2", "AVX2_VNNI", "AVX2_VNNI_2"}


def _cpu_dtype(cpu_flags: frozenset[str]) -> tuple[bool, str]:
    """Whether bfloat16 is faster on this CPU, and why."""
    cap = os.environ.get("ONEDNN_MAX_CPU_ISA", os.environ.get("DNNL_MAX_CPU_ISA", "")).upper()
    if cap in BELOW_AVX512:
        return False, f"auto: ONEDNN_MAX_CPU_ISA={cap} keeps oneDNN from bfloat16 instructions"
    for flag, name in BF16_FLAGS.items():
        if flag in cpu_flags:
            return True, f"auto: this CPU has {name} ({flag})"
    return False, (
        "auto: no amx_bf16 or avx512_bf16 on this CPU, where bfloat16 is emulated "
        "and about 10x slower"
    )


def accelerator_plan(
    config: CompileConfig,
    gpus: list[tuple[str, tuple[int, int] | None]],
    cpu_flags: frozenset[str] = frozenset(),
    distributed: bool = False,
) -> Accelerator:
    """Settings for `gpus` (name, compute capability) or a CPU with `cpu_flags` (as in
    /proc/cpuinfo), where the config says "auto"; an explicit value wins.

    On a GPU: XLA, 32 steps per call, and float16 compute when every GPU has tensor cores
    (compute capability 7.0 or newer). On a CPU: one step per call, no XLA (it made an epoch 5x
    slower on the 2-core CPU we measured), and bfloat16 compute where the CPU has instructions
    for it (BF16_FLAGS). Under tf.distribute our own step runs one step per call, in float32:
    Keras's LossScaleOptimizer fails inside `strategy.run` (Keras 3.15), and Keras turns XLA
    off there.
    """
    on_gpu = bool(gpus)
    if on_gpu:
        fast = all(cc is not None and cc >= (7, 0) for _, cc in gpus)
        mixed = "mixed_float16"
        why = (
            "auto: every GPU has tensor cores"
            if fast
            else "auto: a GPU without tensor cores (compute capability < 7.0)"
        )
    else:
        (fast, why), mixed = _cpu_dtype(cpu_flags), "mixed_bfloat16"
    steps = (
        config.steps_per_execution
        if config.steps_per_execution != "auto"
        else GPU_STEPS_PER_EXECUTION
        if on_gpu
        else 1
    )
    wanted = fast if config.mixed_precision == "auto" else config.mixed_precision
    if config.mixed_precision != "auto":
        why = f"compile.mixed_precision: {str(config.mixed_precision).lower()}"
    if distributed:
        why = "tf.distribute runs float32"
    return Accelerator(
        device="gpu" if on_gpu else "cpu",
        jit_compile=config.jit_compile,  # "auto" is Keras's own rule, the one above
        steps_per_execution=1 if distributed else steps,
        dtype_policy=mixed if wanted and not distributed else "float32",
        reason=why,
    )


def cpu_flags(cpuinfo: str = "/proc/cpuinfo") -> frozenset[str]:
    """The CPU's feature flags (Linux); empty where `cpuinfo` cannot be read."""
    try:
        with open(cpuinfo, encoding="utf-8") as info:
            for line in info:
                if line.startswith("flags"):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def build_model(config: ModelConfig, dtype_policy: str = "float32") -> keras.Model:
    """A Sequential model: each config layer is the Keras layer of that name with those arguments.

    With a mixed `dtype_policy`, layers compute in float16 or bfloat16 (weights stay float32),
    except the last, whose softmax stays float32 for stable probabilities and loss.
    """
    model = keras.Sequential(name=config.name)
    model.add(keras.Input(shape=tuple(config.input_shape)))
    for i, layer in enumerate(config.layers):
        arguments = layer.model_dump(exclude={"type"})
        if dtype_policy != "float32":
            arguments["dtype"] = "float32" if i == len(config.layers) - 1 else dtype_policy
        model.add(getattr(keras.layers, layer.type)(**arguments))
    return model


def learning_rate(config: CompileConfig, total_steps: int):
    """The constant learning rate, or a Keras schedule over `total_steps` optimizer steps."""
    schedule = config.schedule
    if schedule is None:
        return config.learning_rate
    total_steps = max(1, total_steps)
    if schedule.type == "cosine":
        return keras.optimizers.schedules.CosineDecay(
            config.learning_rate, decay_steps=total_steps, alpha=schedule.end_factor
        )
    warmup = int(round(schedule.warmup * total_steps))
    return keras.optimizers.schedules.CosineDecay(
        config.learning_rate * schedule.start_factor,
        decay_steps=max(1, total_steps - warmup),
        alpha=schedule.end_factor,
        warmup_target=config.learning_rate,
        warmup_steps=warmup,
    )


def compile_model(
    model: keras.Model,
    config: CompileConfig,
    total_steps: int = 1,
    accelerator: Accelerator | None = None,
) -> keras.Model:
    """Optimizer with its learning rate (or schedule over `total_steps`), loss and metrics.

    A float16 model gets Keras's loss scaling (a LossScaleOptimizer around the optimizer);
    bfloat16 has float32's range and needs none.
    """
    betas = {
        name: value
        for name, value in (("beta_1", config.beta_1), ("beta_2", config.beta_2))
        if value is not None and config.optimizer in ("adam", "adamw")
    }
    optimizer = OPTIMIZERS[config.optimizer](
        learning_rate=learning_rate(config, total_steps), **betas
    )
    if any(layer.dtype_policy.name == "mixed_float16" for layer in model.layers):
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
    extra = {}
    if accelerator is not None:
        extra = {
            "jit_compile": accelerator.jit_compile,
            "steps_per_execution": accelerator.steps_per_execution,
        }
    loss = (
        keras.losses.CategoricalCrossentropy(label_smoothing=config.label_smoothing)
        if config.label_smoothing
        else config.loss
    )
    model.compile(optimizer=optimizer, loss=loss, metrics=list(config.metrics), **extra)
    return model
