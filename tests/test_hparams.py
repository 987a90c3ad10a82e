"""Every run in TensorBoard's HParams dashboard (cnn_mnist/training/hparams.py): the settings flattened
from the config, and the plugin data read back from real event files."""

from __future__ import annotations

import json
import shutil

import pytest

from cnn_mnist.config.load import load_config
from cnn_mnist.training import hparams

LECTURE = "C32-C64-P2-D0.25-F-U128-D0.5-U10"


def test_layer_stack_in_short():
    assert hparams.layer_stack(load_config().to_dict()["model"]["layers"]) == LECTURE
    assert (
        hparams.layer_stack(load_config("speedrun").to_dict()["model"]["layers"])
        == "C24k5-P2-C32-P2-F-U256-U10"
    )
    assert (
        hparams.layer_stack(
            [
                {"type": "Conv2D", "filters": 8, "kernel_size": [3, 3], "strides": 2},
                {"type": "BatchNormalization"},
                {"type": "AveragePooling2D", "pool_size": 2},
                {"type": "GlobalAveragePooling2D"},
                {"type": "Dense", "units": 10},
            ]
        )
        == "C8s2-B-A2-G-U10"
    )


def test_hparams_of_the_lecture_config():
    config = load_config(overrides={"training.seed": 7}).to_dict()
    values = hparams.hparams_of(config, params=1199882, compute_dtype="mixed_bfloat16")
    assert values == {
        "config": "default",
        "data.dataset": "mnist",
        "compile.optimizer": "adam",
        "compile.learning_rate": 0.001,
        "compile.schedule": "constant",
        "training.batch_size": 128,
        "training.epochs": 1,
        "model.layers": LECTURE,
        "model.conv1.filters": 32,
        "model.kernel_size": 3,
        "model.conv2.filters": 64,
        "model.dropout1.rate": 0.25,
        "model.dense1.units": 128,
        "model.dropout2.rate": 0.5,
        "training.seed": 7,
        "compute_dtype": "bfloat16",
        "model.params": 1199882,
    }
    assert set(values) <= set(hparams.HPARAMS)


def test_hparams_name_the_config_dataset_and_sweep():
    config = load_config("speedrun").to_dict()
    config["data"]["dataset"] = "fashion_mnist"  # another helper adds data.dataset
    values = hparams.hparams_of(config, source="speedrun", sweep={"name": "lr", "trial": 3})
    assert (values["config"], values["data.dataset"], values["sweep"]) == (
        "speedrun",
        "fashion_mnist",
        "lr",
    )
    assert values["compile.schedule"] == "one_cycle" and values["model.kernel_size"] == 5
    assert "training.seed" not in values  # none in the config: the run records the drawn one
    assert hparams.hparams_of(config, source="experiments/mine.yaml")["config"] == "mine.yaml"


def _session_and_experiment(run_dir):
    from tensorboard.backend.event_processing.plugin_event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import metadata

    events = EventAccumulator(str(run_dir))
    events.Reload()
    content = events.PluginTagToContent(metadata.PLUGIN_NAME)
    session = metadata.parse_session_start_info_plugin_data(
        content[metadata.SESSION_START_INFO_TAG]
    )
    experiment = metadata.parse_experiment_plugin_data(content[metadata.EXPERIMENT_TAG])
    return session, experiment


def test_a_training_run_writes_its_hparams_for_tensorboard(tiny_trained):
    """The pipeline's own run (conftest's tiny training): its event file holds the session's
    hparams and the experiment's columns and metrics, as TensorBoard reads them."""
    _, result = tiny_trained
    record = json.loads(result.record_path.read_text())
    session, experiment = _session_and_experiment(result.run_dir)
    values = {
        k: v.WhichOneof("kind") and getattr(v, v.WhichOneof("kind"))
        for k, v in session.hparams.items()
    }
    assert values == pytest.approx(record["hparams"])
    assert session.group_name == result.run_id
    assert values["model.layers"] == "C8-P2-F-U10" and values["training.seed"] == 7
    assert values["model.params"] == record["metrics"]["params"]
    assert values["training.batch_size"] == 32 and values["compute_dtype"] in (
        "float32",
        "bfloat16",
    )
    assert [h.name for h in experiment.hparam_infos] == list(hparams.HPARAMS)
    assert [(m.name.group, m.name.tag) for m in experiment.metric_infos] == [
        ("evaluation", "test_accuracy"),
        ("evaluation", "test_loss"),
    ]


def test_tensorboard_lists_every_run_with_its_test_metrics(tiny_trained, tmp_path):
    """TensorBoard's own HParams backend over a log dir of two runs: both sessions, with their
    settings and the test accuracy and loss from their evaluation event files."""
    import tensorflow as tf
    from tensorboard import context
    from tensorboard.backend.event_processing import data_provider
    from tensorboard.backend.event_processing import plugin_event_multiplexer as multiplexer
    from tensorboard.plugins import base_plugin
    from tensorboard.plugins.hparams import api_pb2, backend_context, list_session_groups

    _, result = tiny_trained
    logs = tmp_path / "logs"
    shutil.copytree(result.run_dir, logs / result.run_id)
    other = logs / "20990101-000000-beef"  # a second run: its hparams and evaluation scalars
    values = {
        **json.loads(result.record_path.read_text())["hparams"],
        "compile.learning_rate": 0.01,
        "sweep": "lr-search",
    }
    with tf.summary.create_file_writer(str(other / "evaluation")).as_default():
        tf.summary.scalar("test_accuracy", 0.5, step=1)
        tf.summary.scalar("test_loss", 1.5, step=1)
    hparams.write_hparams(other, values, logs)

    events = multiplexer.EventMultiplexer()
    events.AddRunsFromDirectory(str(logs))
    events.Reload()
    tb = base_plugin.TBContext(
        logdir=str(logs),
        multiplexer=events,
        data_provider=data_provider.MultiplexerDataProvider(events, str(logs)),
    )
    request = api_pb2.ListSessionGroupsRequest(
        start_index=0, slice_size=10, allowed_statuses=[api_pb2.STATUS_UNKNOWN]
    )
    groups = (
        list_session_groups.Handler(
            context.RequestContext(), backend_context.Context(tb), "", request
        )
        .run()
        .session_groups
    )
    found = {
        g.name: (
            {k: v for k, v in g.hparams.items()},
            {m.name.tag: m.value for m in g.metric_values},
        )
        for g in groups
    }
    assert set(found) == {result.run_id, other.name}
    mine, theirs = found[result.run_id], found[other.name]
    assert mine[1]["test_accuracy"] == pytest.approx(result.evaluation.accuracy, abs=1e-6)
    assert mine[1]["test_loss"] == pytest.approx(result.evaluation.loss, rel=1e-5)
    assert theirs[1] == {"test_accuracy": 0.5, "test_loss": 1.5}
    assert theirs[0]["compile.learning_rate"].number_value == 0.01
    assert theirs[0]["sweep"].string_value == "lr-search"
    assert mine[0]["compile.learning_rate"].number_value == 0.001
    # The second run's columns: numbers span both runs' values; text lists every value there
    # can be (the schema's choices), or none for open text.
    from tensorboard.plugins.hparams import api_pb2 as hp_pb2

    _, experiment = _session_and_experiment(other)
    columns = {h.name: h for h in experiment.hparam_infos}
    rate = columns["compile.learning_rate"]
    assert (rate.domain_interval.min_value, rate.domain_interval.max_value) == (0.001, 0.01)
    assert {v.string_value for v in columns["compile.optimizer"].domain_discrete.values} == {
        "adam",
        "adamw",
        "sgd",
        "rmsprop",
    }
    assert {v.string_value for v in columns["compile.schedule"].domain_discrete.values} == {
        "constant",
        "one_cycle",
        "cosine",
    }
    assert columns["config"].type == hp_pb2.DATA_TYPE_STRING
    assert not columns["config"].domain_discrete.values
