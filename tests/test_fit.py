from pathlib import Path

import pytest

from cnn_mnist.config.load import load_config
from cnn_mnist.stages.data import prepare
from cnn_mnist.stages.fit import fit
from cnn_mnist.stages.model import build_model, compile_model


def quiet_fit(model, data, config, run_dir):
    """stages/fit.py's `fit` with the config's training and TensorBoard sections, no bar."""
    return fit(
        model,
        data,
        training=config.training,
        tensorboard=config.tensorboard,
        run_dir=run_dir,
        verbose=0,
    )


def event_tags(folder: Path) -> set[str]:
    """Every tag TensorBoard's own reader finds in a run folder (plus 'graph' if present)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    accumulator = EventAccumulator(str(folder), size_guidance={"tensors": 0})
    accumulator.Reload()
    tags = accumulator.Tags()
    return set(tags["tensors"]) | set(tags["scalars"]) | ({"graph"} if tags["graph"] else set())


def test_fit_learns_and_logs_to_tensorboard(tmp_path, tiny_config_file, tiny_mnist):
    config = load_config(tiny_config_file)
    data = prepare(tiny_mnist)
    model = compile_model(build_model(config.model), config.compile)
    history = quiet_fit(model, data, config, tmp_path / "run")
    assert len(history["loss"]) == 2 and history["loss"][1] < history["loss"][0]
    assert history["val_accuracy"][-1] > 0.5  # the synthetic digits are easy
    train_tags = event_tags(tmp_path / "run" / "train")
    assert {"epoch_loss", "epoch_accuracy", "batch_loss", "batch_accuracy", "graph"} <= train_tags
    assert any(tag.endswith("kernel/histogram") for tag in train_tags)
    # tensorboard.feature_maps: the kernels and the sample digit's maps, at every epoch
    assert {"kernels/layer_0", "feature_maps/layer_0_conv2d"} <= train_tags
    assert _steps(tmp_path / "run" / "train", "feature_maps/layer_0_conv2d") == [0, 1]
    assert {"epoch_loss", "epoch_accuracy"} <= event_tags(tmp_path / "run" / "validation")


def _steps(folder: Path, tag: str) -> list[int]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    accumulator = EventAccumulator(str(folder), size_guidance={"tensors": 0})
    accumulator.Reload()
    return [e.step for e in accumulator.Tensors(tag)]


def test_feature_maps_need_a_sample_in_the_test_set(tmp_path, tiny_config_file, tiny_mnist):
    from cnn_mnist.core.errors import ConfigError

    config = load_config(tiny_config_file, sets=["tensorboard.sample_index=128"])
    model = compile_model(build_model(config.model), config.compile)
    with pytest.raises(ConfigError, match="sample_index: 128 is past the 128 test images"):
        quiet_fit(model, prepare(tiny_mnist), config, tmp_path)
    off = load_config(
        tiny_config_file, sets=["tensorboard.feature_maps=false", "training.epochs=1"]
    )
    quiet_fit(model, prepare(tiny_mnist), off, tmp_path / "off")
    assert not any(
        t.startswith(("kernels/", "feature_maps/")) for t in event_tags(tmp_path / "off" / "train")
    )


def test_batch_logging_every_n_batches(tmp_path, tiny_config_file, tiny_mnist):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    config = load_config(tiny_config_file, sets=["tensorboard.update_freq=5", "training.epochs=1"])
    model = compile_model(build_model(config.model), config.compile)
    quiet_fit(model, prepare(tiny_mnist), config, tmp_path)
    accumulator = EventAccumulator(str(tmp_path / "train"), size_guidance={"tensors": 0})
    accumulator.Reload()
    # 512 images / batch 32 = 16 batches: logged at batches 5, 10, 15.
    assert [e.step for e in accumulator.Tensors("batch_loss")] == [5, 10, 15]


def test_batch_logging_with_several_steps_per_call(tmp_path, tiny_config_file, tiny_mnist):
    """steps_per_execution (used on GPUs) calls back once per 4 steps: the curve keeps the
    optimizer's step numbers, one point each time a multiple of update_freq is passed."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from cnn_mnist.stages.model import accelerator_plan

    config = load_config(
        tiny_config_file,
        sets=["tensorboard.update_freq=5", "training.epochs=1", "compile.steps_per_execution=4"],
    )
    model = compile_model(
        build_model(config.model), config.compile, accelerator=accelerator_plan(config.compile, [])
    )
    quiet_fit(model, prepare(tiny_mnist), config, tmp_path)
    accumulator = EventAccumulator(str(tmp_path / "train"), size_guidance={"tensors": 0})
    accumulator.Reload()
    # 16 steps in calls ending at steps 4, 8, 12, 16: 5, 10 and 15 are passed at 8, 12, 16.
    assert [e.step for e in accumulator.Tensors("batch_loss")] == [8, 12, 16]


@pytest.mark.parametrize("enabled", [True, False])
def test_tensorboard_enabled_decides_the_event_files(
    tmp_path, tiny_config_file, tiny_mnist, enabled
):
    config = load_config(
        tiny_config_file, sets=[f"tensorboard.enabled={str(enabled).lower()}", "training.epochs=1"]
    )
    model = compile_model(build_model(config.model), config.compile)
    run_dir = tmp_path / "run"
    quiet_fit(model, prepare(tiny_mnist), config, run_dir)
    assert (run_dir / "epochs.jsonl").is_file()  # the run folder is used either way
    assert bool(list(run_dir.glob("**/events.out.tfevents*"))) == enabled


def test_histograms_are_tensorboard_histograms(tmp_path, tiny_config_file, tiny_mnist):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    config = load_config(tiny_config_file, sets=["training.epochs=2"])
    model = compile_model(build_model(config.model), config.compile)
    quiet_fit(model, prepare(tiny_mnist), config, tmp_path)
    accumulator = EventAccumulator(str(tmp_path / "train"), size_guidance={"tensors": 0})
    accumulator.Reload()
    tags = [t for t in accumulator.Tags()["tensors"] if t.endswith("/histogram")]
    assert len(tags) == len(model.weights)
    kernel = f"{model.layers[0].kernel.path}/histogram"
    assert kernel in tags
    assert accumulator.SummaryMetadata(kernel).plugin_data.plugin_name == "histograms"
    events = accumulator.Tensors(kernel)
    assert [e.step for e in events] == [0, 1]
    import tensorflow as tf

    buckets = tf.make_ndarray(events[-1].tensor_proto)
    assert buckets.shape == (30, 3) and buckets[:, 2].sum() == model.layers[0].kernel.numpy().size


def test_profile_batch_captures_steps_for_the_profile_tab(tmp_path, tiny_config_file):
    """`tensorboard.profile_batch` (what `cnn train --profile` sets): TensorFlow's profiler
    writes the steps' trace (an .xplane.pb) into the run's logs, where the Profile tab reads it."""
    from cnn_mnist.config.load import load_config
    from cnn_mnist.training.pipeline import train

    config = load_config(
        tiny_config_file, sets=["training.epochs=1", "tensorboard.profile_batch=[3, 5]"]
    )
    run = train(config, progress=0)
    (trace,) = run.run_dir.glob("**/plugins/profile/*/*.xplane.pb")
    assert trace.stat().st_size > 1000
    from cnn_mnist.core.errors import ConfigError

    with pytest.raises(ConfigError, match=r"tensorboard.profile_batch.*\[first, last\]"):
        load_config(tiny_config_file, sets=["tensorboard.profile_batch=[5, 3]"])
