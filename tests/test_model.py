from pathlib import Path

import keras
import pytest

from cnn_mnist.config.load import load_config, validate
from cnn_mnist.stages.model import build_model, compile_model


def test_lecture_model_has_1199882_params():
    model = build_model(load_config().model)
    assert model.count_params() == 1_199_882
    assert model.input_shape == (None, 28, 28, 1) and model.output_shape == (None, 10)
    assert [type(layer).__name__ for layer in model.layers] == [
        "Conv2D",
        "Conv2D",
        "MaxPooling2D",
        "Dropout",
        "Flatten",
        "Dense",
        "Dropout",
        "Dense",
    ]
    assert model.layers[0].activation.__name__ == "relu"
    assert model.layers[-1].activation.__name__ == "softmax"
    assert model.layers[3].rate == 0.25


def test_layer_arguments_reach_keras():
    config = validate(
        {
            "model": {
                "layers": [
                    {
                        "type": "Conv2D",
                        "filters": 4,
                        "kernel_size": [5, 3],
                        "strides": 2,
                        "padding": "same",
                    },
                    {"type": "Flatten"},
                    {"type": "Dense", "units": 10, "activation": "softmax"},
                ]
            }
        }
    )
    conv = build_model(config.model).layers[0]
    assert conv.kernel_size == (5, 3) and conv.strides == (2, 2) and conv.padding == "same"


def test_compile_uses_config():
    config = load_config(sets=["compile.optimizer=sgd", "compile.learning_rate=0.05"])
    model = compile_model(build_model(config.model), config.compile)
    assert isinstance(model.optimizer, keras.optimizers.SGD)
    assert float(model.optimizer.learning_rate.numpy()) == pytest.approx(0.05)


@pytest.mark.parametrize("kind", ["one_cycle", "cosine"])
def test_schedules(kind):
    from cnn_mnist.stages.model import learning_rate

    config = load_config(
        sets=["compile.learning_rate=0.01", f"compile.schedule={{type: {kind}, warmup: 0.2}}"]
    ).compile
    schedule = learning_rate(config, total_steps=100)
    at = lambda step: float(schedule(step))
    if kind == "one_cycle":
        assert at(0) == pytest.approx(0.01 * 0.04)
        assert at(20) == pytest.approx(0.01, rel=1e-4)  # the peak, after 20% of the steps
        assert at(10) == pytest.approx((0.01 * 0.04 + 0.01) / 2, rel=1e-3)
    else:
        assert at(0) == pytest.approx(0.01)
    assert at(100) == pytest.approx(0.0, abs=1e-7)
    assert at(60) < at(40)


def test_model_with_schedule_loads_with_plain_keras(tmp_path):
    from cnn_mnist.stages.save import save_model

    config = load_config("speedrun")
    model = compile_model(build_model(config.model), config.compile, total_steps=50)
    path = save_model(model, tmp_path / "s.h5")
    loaded = keras.models.load_model(path)  # compiled: the schedule is Keras's own
    assert (
        isinstance(loaded.optimizer.learning_rate, keras.optimizers.schedules.CosineDecay)
        or loaded.optimizer is not None
    )


def test_speedrun_config_is_valid_and_fits_exactly(caplog):
    config = load_config("speedrun")
    assert config.training.batch_size == 256 and config.compile.schedule.type == "one_cycle"
    assert "does not fit" not in caplog.text
    # (5x5x1 + 1) x 24 + (3x3x24 + 1) x 32 + (5x5x32 + 1) x 256 + (256 + 1) x 10
    assert build_model(config.model).count_params() == 215_194


def test_adam_betas_and_label_smoothing_reach_keras():
    import keras

    config = load_config("speedrun", sets=["compile.label_smoothing=0.1"])
    model = compile_model(build_model(config.model), config.compile, total_steps=10)
    assert (model.optimizer.beta_1, model.optimizer.beta_2) == (0.7, 0.9)
    assert isinstance(model.loss, keras.losses.CategoricalCrossentropy)
    assert model.loss.get_config()["label_smoothing"] == 0.1
    plain = compile_model(build_model(config.model), load_config().compile)
    assert (plain.optimizer.beta_1, plain.optimizer.beta_2) == (0.9, 0.999)  # Keras's own


def test_onednn_capped_at_avx2_computes_in_float32(monkeypatch):
    """ONEDNN_MAX_CPU_ISA=AVX2 (how an AVX2-only CPU is emulated) keeps oneDNN from its
    bfloat16 kernels: `auto` then picks float32, as on that CPU."""
    from cnn_mnist.stages.model import accelerator_plan

    flags = frozenset({"avx2", "avx512f", "avx512_bf16"})
    assert accelerator_plan(load_config().compile, [], flags).dtype_policy == "mixed_bfloat16"
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "avx2")
    plan = accelerator_plan(load_config().compile, [], flags)
    assert plan.dtype_policy == "float32" and "ONEDNN_MAX_CPU_ISA=AVX2" in plan.reason


# --- what runs where: GPU settings, decided by us, applied by Keras ----------------------------


def test_accelerator_plan_uses_what_helps_on_the_hardware():
    from cnn_mnist.stages.model import accelerator_plan

    auto = load_config().compile
    cpu = accelerator_plan(auto, [], frozenset({"avx2", "fma"}))
    assert (cpu.device, cpu.jit_compile, cpu.steps_per_execution, cpu.dtype_policy) == (
        "cpu",
        "auto",
        1,
        "float32",
    )
    assert "no amx_bf16 or avx512_bf16" in cpu.reason
    amx = accelerator_plan(auto, [], frozenset({"avx512f", "amx_tile", "amx_bf16"}))
    assert (amx.steps_per_execution, amx.dtype_policy) == (1, "mixed_bfloat16")
    assert amx.reason == "auto: this CPU has AMX (amx_bf16)"
    zen4 = accelerator_plan(auto, [], frozenset({"avx2", "avx512f", "avx512_bf16"}))
    assert zen4.dtype_policy == "mixed_bfloat16" and "AVX-512 BF16" in zen4.reason
    avx512 = accelerator_plan(auto, [], frozenset({"avx2", "avx512f", "avx512_vnni"}))
    assert avx512.dtype_policy == "float32"  # AVX-512 without BF16 emulates it too
    h100 = accelerator_plan(auto, [("NVIDIA H100", (9, 0))])
    assert (h100.device, h100.steps_per_execution, h100.dtype_policy) == (
        "gpu",
        32,
        "mixed_float16",
    )
    pascal = accelerator_plan(auto, [("Tesla P100", (6, 0)), ("NVIDIA A100", (8, 0))])
    assert pascal.dtype_policy == "float32"  # no tensor cores on one of them
    chosen = load_config(
        sets=[
            "compile.mixed_precision=false",
            "compile.steps_per_execution=4",
            "compile.jit_compile=false",
        ]
    ).compile
    mine = accelerator_plan(chosen, [("NVIDIA H100", (9, 0))])
    assert (mine.jit_compile, mine.steps_per_execution, mine.dtype_policy) == (False, 4, "float32")
    forced = load_config(sets=["compile.mixed_precision=true"]).compile
    assert accelerator_plan(forced, []).dtype_policy == "mixed_bfloat16"
    assert accelerator_plan(forced, []).reason == "compile.mixed_precision: true"


def test_cpu_flags_reads_cpuinfo(tmp_path):
    from cnn_mnist.stages.model import cpu_flags

    info = tmp_path / "cpuinfo"
    info.write_text(
        "processor\t: 0\nmodel name\t: Some CPU\n"
        "flags\t\t: fpu sse2 avx2 avx512_bf16\n\nprocessor\t: 1\n"
    )
    assert cpu_flags(str(info)) == frozenset({"fpu", "sse2", "avx2", "avx512_bf16"})
    assert cpu_flags(str(tmp_path / "missing")) == frozenset()
    if Path("/proc/cpuinfo").is_file() and "flags" in Path("/proc/cpuinfo").read_text():
        assert cpu_flags() and cpu_flags() <= frozenset(
            Path("/proc/cpuinfo").read_text().split()
        )  # this machine's, parsed the same way


def test_compile_passes_the_plan_to_keras():
    from cnn_mnist.stages.model import accelerator_plan

    config = load_config(sets=["compile.steps_per_execution=8"])
    model = compile_model(
        build_model(config.model), config.compile, accelerator=accelerator_plan(config.compile, [])
    )
    assert model.steps_per_execution == 8
    assert model.jit_compile is False  # Keras's "auto" on a machine without a GPU


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
def test_mixed_precision_trains_and_saves_as_float32(tmp_path, tiny_mnist, policy):
    """float16 (for GPUs; run here on the CPU, slow but real) and bfloat16 compute: the softmax
    stays float32, float16's loss is scaled, and the saved model and export are float32."""
    import numpy as np

    from cnn_mnist.stages.data import prepare
    from cnn_mnist.stages.fit import fit
    from cnn_mnist.stages.handle import open_saved
    from cnn_mnist.stages.save import export_litert, save_model
    from tests.conftest import TINY_LAYERS

    config = validate(
        {
            "model": {"layers": TINY_LAYERS},
            "training": {"epochs": 2, "batch_size": 32, "seed": 1},
            "tensorboard": {"enabled": False},
        }
    )
    model = compile_model(build_model(config.model, policy), config.compile)
    half = policy.removeprefix("mixed_")
    assert [layer.compute_dtype for layer in model.layers] == [half, half, half, "float32"]
    assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer) == (half == "float16")
    data = prepare(tiny_mnist, True, None, None)
    history = fit(
        model,
        data,
        training=config.training,
        tensorboard=config.tensorboard,
        run_dir=None,
        verbose=0,
    )
    assert history["val_accuracy"][-1] > 0.8  # the synthetic digits are easy
    saved = open_saved(save_model(model, tmp_path / "mixed.h5")).keras_model()
    assert {layer.compute_dtype for layer in saved.layers} == {"float32"}
    np.testing.assert_allclose(
        saved.predict(data.x_test, verbose=0), model.predict(data.x_test, verbose=0), atol=2e-2
    )
    export_litert(model, tmp_path / "mixed.tflite")
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(tmp_path / "mixed.tflite"))
    assert interpreter.get_input_details()[0]["dtype"] == np.float32
