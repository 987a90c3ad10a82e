from pathlib import Path

import pytest

from cnn_mnist.config.load import (
    apply_override,
    default_config_path,
    load_config,
    parse_set,
    validate,
)
from cnn_mnist.config.schema import LAYER_NAMES, Config
from cnn_mnist.core.errors import ConfigError

REPO = Path(__file__).resolve().parent.parent


def test_default_yaml_equals_schema_defaults():
    # The schema holds every default; the shipped file spells out the same lecture model.
    assert load_config() == Config()
    assert (REPO / "configs" / "default.yaml").read_text() == default_config_path().read_text()


def test_default_is_the_lecture_model():
    config = load_config()
    kinds = [layer.type for layer in config.model.layers]
    assert kinds == [
        "Conv2D",
        "Conv2D",
        "MaxPooling2D",
        "Dropout",
        "Flatten",
        "Dense",
        "Dropout",
        "Dense",
    ]
    assert config.model.layers[0].filters == 32 and config.model.layers[0].kernel_size == (3, 3)
    assert config.model.layers[3].rate == 0.25 and config.model.layers[6].rate == 0.5
    assert config.compile.optimizer == "adam" and config.compile.learning_rate == 0.001
    assert (config.training.epochs, config.training.batch_size) == (1, 128)
    assert config.tensorboard.histogram_freq == 1
    assert config.output.model_path == "models/digits_recognition_cnn.h5"


@pytest.mark.parametrize(
    "raw, expected",
    [
        ({"trainig": {"epochs": 1}}, ["trainig: unknown key", "did you mean 'training'"]),
        (
            {"model": {"layers": [{"type": "Conv3D", "filters": 2}]}},
            ["model.layers[0].type: unknown layer type 'Conv3D'", "valid types: Conv2D"],
        ),
        (
            {"model": {"layers": [{"type": "Conv2D", "filters": "32", "kernel_size": 3}]}},
            ["model.layers[0].filters", "valid integer", "'32'"],
        ),
        (
            {"model": {"layers": [{"type": "Dropout", "rate": 1.5}]}},
            ["model.layers[0].rate", "less than 1", "1.5"],
        ),
        ({"training": {"epochs": -1}}, ["training.epochs", "greater than or equal to 1"]),
        ({"training": {"batch_size": True}}, ["training.batch_size", "valid integer"]),
        (
            {
                "model": {
                    "layers": [{"type": "Flatten"}, {"type": "MaxPooling2D", "pool_size": "x"}]
                }
            },
            ["model.layers[1].pool_size", "positive integer or a list of two"],
        ),
        (
            {"model": {"layers": [{"type": "Dense", "units": 10, "activaton": "relu"}]}},
            ["model.layers[0].activaton: unknown key", "did you mean 'activation'", "units"],
        ),
        ({"compile": {"optimizer": "adamm"}}, ["compile.optimizer", "'adamm'", "'adam'"]),
        ({"output": {"model_path": "model.pt"}}, ["output.model_path", ".h5 or .keras"]),
        ({"model": {"layers": []}}, ["model.layers", "at least 1"]),
    ],
)
def test_bad_values_name_the_key(raw, expected):
    with pytest.raises(ConfigError) as info:
        validate(raw)
    message = str(info.value)
    for part in expected:
        assert part in message, message


def test_every_problem_is_listed():
    with pytest.raises(ConfigError) as info:
        validate({"training": {"epochs": 0, "batch_size": 0}})
    assert "training.epochs" in str(info.value) and "training.batch_size" in str(info.value)


def test_broken_yaml_names_file_and_line(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("training:\n  epochs: [1\n")
    with pytest.raises(ConfigError, match=r"broken\.yaml: broken YAML at line \d+"):
        load_config(path)


def test_missing_file_and_non_mapping(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.yaml")
    (tmp_path / "list.yaml").write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="expected a mapping of sections"):
        load_config(tmp_path / "list.yaml")


def test_empty_file_means_all_defaults(tmp_path):
    (tmp_path / "empty.yaml").write_text("")
    assert load_config(tmp_path / "empty.yaml") == Config()


def test_overrides_and_sets_are_type_checked():
    config = load_config(
        sets=["model.layers[3].rate=0.3", "training.epochs=3", "data.limit_train=100"],
        overrides={"training.batch_size": 64, "compile.learning_rate": None},
    )
    assert config.model.layers[3].rate == 0.3
    assert config.training.epochs == 3 and config.training.batch_size == 64
    assert config.data.limit_train == 100
    assert config.compile.learning_rate == 0.001  # None means "not given"
    with pytest.raises(ConfigError, match="training.epochs.*'three'"):
        load_config(sets=["training.epochs=three"])
    with pytest.raises(ConfigError, match="training.epoch: unknown key"):
        load_config(sets=["training.epoch=3"])


@pytest.mark.parametrize(
    "item, expected",
    [
        ("training.epochs", "expected KEY.PATH=VALUE"),
        ("model.layers[9].rate=0.1", r"model.layers\[9\] is out of range \(the list has 8 items"),
        ("model.layers[x].rate=0.1", "bad list index"),
        ("training.epochs.deep=1", "training.epochs is not a section"),
    ],
)
def test_bad_set_items(item, expected):
    with pytest.raises(ConfigError, match=expected):
        load_config(sets=[item])


def test_parse_set_values():
    assert parse_set("a.b=3") == ("a.b", 3)
    assert parse_set("a.b=[3, 3]") == ("a.b", [3, 3])
    assert parse_set("a.b=null") == ("a.b", None)
    assert parse_set("a.b=relu") == ("a.b", "relu")


def test_apply_override_creates_sections():
    raw = {}
    apply_override(raw, "training.seed", 5)
    assert raw == {"training": {"seed": 5}}


def test_kernel_larger_than_input_is_an_error():
    with pytest.raises(ConfigError, match=r"model.layers\[0\] \(Conv2D\).*29x29.*28x28x1"):
        load_config(sets=["model.layers[0].kernel_size=29"])


def test_stride_that_does_not_fit_is_a_warning(caplog):
    config = load_config(sets=["model.layers[0].strides=2"])
    assert config.model.layers[0].strides == (2, 2)
    assert "does not fit" in caplog.text and "model.layers[0]" in caplog.text


def test_model_must_end_in_ten_outputs():
    with pytest.raises(ConfigError, match="must end in 10 outputs"):
        load_config(sets=["model.layers[7].units=9"])


def test_layer_names_cover_keras_layers():
    import keras

    for name in LAYER_NAMES:
        assert hasattr(keras.layers, name)


def test_to_dict_round_trips():
    config = load_config(sets=["training.seed=3"])
    assert validate(config.to_dict()) == config


def test_scientific_notation_is_a_float(tmp_path):
    assert parse_set("compile.learning_rate=1e-4") == ("compile.learning_rate", 1e-4)
    (tmp_path / "lr.yaml").write_text("compile:\n  learning_rate: 3e-4\n")
    assert load_config(tmp_path / "lr.yaml").compile.learning_rate == 3e-4
    assert parse_set("a=1.5") == ("a", 1.5) and parse_set("a=7") == ("a", 7)


def test_shipped_config_by_name(tmp_path, monkeypatch):
    from cnn_mnist.config.load import shipped_configs

    monkeypatch.chdir(tmp_path)
    assert {"default", "speedrun"} <= set(shipped_configs())
    assert load_config("speedrun").output.model_path == "models/speedrun.h5"
    with pytest.raises(
        ConfigError, match="shipped configs: default, fashion, handwriting, speedrun, sweep"
    ):
        load_config("speedrn")
    (tmp_path / "speedrun.yaml").write_text("training: {epochs: 4}\n")
    assert load_config("speedrun.yaml").training.epochs == 4  # a file here wins


def test_monitor_without_validation_is_rejected(tiny_config_file):
    from cnn_mnist.core.errors import ConfigError

    with pytest.raises(ConfigError, match="needs validation data"):
        load_config(tiny_config_file, sets=["training.validation=none", "training.checkpoint={}"])


def _laughs(levels: int, where: str = "data: {class_names: *%s}") -> str:
    """The "billion laughs": each anchor a list of nine aliases of the one before, 9**levels
    strings in a few hundred bytes; the last one used at `where`."""
    names = "abcdefghijklmnop"
    lines = ["x:", "  a: &a [" + ",".join(["lol"] * 9) + "]"]
    for i in range(1, levels):
        lines.append(f"  {names[i]}: &{names[i]} [" + ",".join([f"*{names[i - 1]}"] * 9) + "]")
    return "\n".join([*lines, where % names[levels - 1]]) + "\n"


def test_an_alias_bomb_is_refused_at_once_in_a_short_message(tmp_path):
    import time
    import tracemalloc

    path = tmp_path / "laughs.yaml"
    path.write_text(_laughs(8))  # 9**8 = 43 million strings; 2 GB and 300 MB of message before
    tracemalloc.start()
    start = time.perf_counter()
    with pytest.raises(ConfigError) as info:
        load_config(path)
    seconds = time.perf_counter() - start
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    message = str(info.value)
    assert message.startswith(f"{path}: uses YAML aliases (*name) that expand to too much")
    assert "write the values out" in message and len(message) < 300
    assert seconds < 5 and peak < 100 * 2**20  # bounds that catch an explosion, not speed targets


def test_aliases_that_stay_small_still_work(tmp_path):
    path = tmp_path / "anchors.yaml"
    path.write_text(
        "model:\n"
        "  layers:\n"
        "    - &conv {type: Conv2D, filters: 8, kernel_size: 3, activation: relu}\n"
        "    - *conv\n"
        "    - {type: MaxPooling2D}\n"
        "    - {type: Flatten}\n"
        "    - {type: Dense, units: 10, activation: softmax}\n"
        "training: &t {epochs: 2}\n"
        "sweep: {parameters: {training.epochs: {values: &v [1, 2]}}}\n"
    )
    config = load_config(path)
    assert config.model.layers[0] == config.model.layers[1]
    assert config.training.epochs == 2 and config.sweep.parameters["training.epochs"].values == [
        1,
        2,
    ]
    # A bomb too small to pass the budget is the schema's to refuse, in a short message.
    path.write_text(_laughs(3))
    with pytest.raises(ConfigError, match=r"data.class_names\[0\]: Input should be a valid string"):
        load_config(path)


@pytest.mark.parametrize(
    "text, line, expected",
    [
        ("x: " + "[" * 10000 + "]" * 10000 + "\n", 1, "nested more than 50 deep"),
        ("".join("  " * i + "-\n" for i in range(3000)), 51, "nested more than 50 deep"),
        ("a: &a [*a]\n", 1, "an alias (*name) inside the value it names (&name)"),
        ("model: {layers: &a [{type: Dense, units: *a}]}\n", 1, "inside the value it names"),
        ("training: {epochs: " + "9" * 5000 + "}\n", 1, "an integer of 5000 digits"),
    ],
    ids=[
        "deep flow lists",
        "deep block lists",
        "alias in itself",
        "alias in itself, deeper",
        "5000 digits",
    ],
)
def test_yaml_a_config_cannot_use_is_refused_with_its_line(tmp_path, text, line, expected):
    # Before: a RecursionError or ValueError traceback, or a self-containing list.
    path = tmp_path / "odd.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert message.startswith(f"{path} line {line}: ") and expected in message, message
    assert len(message) < 300


def test_aliases_nested_deeper_than_the_text_are_refused(tmp_path):
    # Each anchor 30 lists deep around the one before: the text is 30 deep, the value 90.
    text = "a: &a " + "[" * 30 + "1" + "]" * 30 + "\n"
    text += "b: &b " + "[" * 30 + "*a" + "]" * 30 + "\n"
    text += "c: " + "[" * 30 + "*b" + "]" * 30 + "\n"
    (tmp_path / "deep.yaml").write_text(text)
    with pytest.raises(ConfigError, match="nested more than 50 deep"):
        load_config(tmp_path / "deep.yaml")


def test_a_set_value_goes_through_the_same_checks():
    value = "[&a [" + ",".join("x" * 9) + "]"
    for prev, name in zip("abcdefg", "bcdefgh"):
        value += f",&{name} [" + ",".join([f"*{prev}"] * 9) + "]"
    with pytest.raises(ConfigError, match=r"^--set data.class_names: uses YAML aliases"):
        load_config(sets=[f"data.class_names={value}]"])
    with pytest.raises(ConfigError, match=r"^--set x: lists and mappings nested more than 50"):
        load_config(sets=["x=" + "[" * 5000])


@pytest.mark.parametrize(
    "sets",
    [
        ["data.class_names=[" + ",".join(["'" + "n" * 10000 + "'"] * 10) + "]"],
        ["output.model_path=" + "m" * 100000],
        ["compile.learning_rate=" + "9" * 4000],
        ["training.epochs=[" + ",".join(["[1, 2, 3]"] * 5000) + "]"],
        ["model.layers[0].type=" + "C" * 100000],
        ["y" * 100000 + "=1"],
        ["model.layers[" + "9" * 100000 + "].rate=1"],
        [f"model.layers[{i}].type=x" for i in range(8)] + [f"training.{k}=x" for k in "abcdefgh"],
    ],
    ids=["names", "path", "digits", "lists", "type", "key", "index", "many problems"],
)
def test_an_error_never_echoes_much_of_the_input(sets):
    with pytest.raises(ConfigError) as info:
        load_config(sets=sets)
    message = str(info.value)
    assert len(message) < 1000 and len(message.splitlines()) <= 3, message


@pytest.mark.parametrize("index", ["²", "١", "9" * 5000])
def test_a_list_index_is_ascii_digits(index):
    # Before: str.isdigit() let '²' and 5,000 digits through to int(), a ValueError traceback.
    with pytest.raises(ConfigError, match=r"bad list index \["):
        load_config(sets=[f"model.layers[{index}].rate=0.1"])


@pytest.mark.parametrize(
    "text, line, key, first",
    [
        ("training:\n  epochs: 5\ntraining:\n  batch_size: 64\n", 3, "training", 1),
        ("training:\n  epochs: 5\n  batch_size: 64\n  epochs: 6\n", 4, "training.epochs", 2),
        (
            "model:\n  layers:\n    - {type: Flatten}\n    - {type: Dense, units: 10, units: 9}\n",
            4,
            "model.layers[1].units",
            4,
        ),
    ],
    ids=["top level", "in a section", "in a layer"],
)
def test_a_key_given_twice_is_refused(tmp_path, text, line, key, first):
    # Before: YAML kept the last silently (the first block's epochs: 5 was lost).
    path = tmp_path / "twice.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value) == (
        f"{path} line {line}: key '{key}' appears twice (first at line {first}); merge the two "
        "into one (YAML would keep only the last, silently)"
    )


def test_a_merged_key_may_be_overridden_and_a_set_value_is_checked_too(tmp_path):
    path = tmp_path / "merge.yaml"
    path.write_text("base: &b {epochs: 2, batch_size: 32}\ntraining:\n  <<: *b\n  epochs: 3\n")
    with pytest.raises(ConfigError, match="base: unknown key"):
        load_config(path)  # the merge itself is fine; `base` is not a section
    training = load_config(sets=["training={<<: {epochs: 2, batch_size: 32}, epochs: 3}"]).training
    assert (training.epochs, training.batch_size) == (3, 32)
    with pytest.raises(ConfigError, match=r"^--set training: key 'epochs' appears twice"):
        load_config(sets=["training={epochs: 1, epochs: 2}"])


def test_many_problems_are_the_first_two_and_a_count():
    sets = [f"training.{key}=x" for key in ("epochs", "batch_size", "seed", "shuffle")]
    with pytest.raises(ConfigError) as info:
        load_config(sets=sets)
    lines = str(info.value).splitlines()
    assert lines[0].startswith("invalid config default.yaml: training.epochs: ")
    assert lines[1].startswith("  also: training.batch_size: ")
    assert lines[2] == "  also: 2 more problems" and len(lines) == 3


@pytest.mark.parametrize("name", ["a" * 5000, "a/" * 3000 + "x.yaml", "n" * 100_000])
def test_a_config_path_too_long_for_the_system_is_a_config_error(name):
    # Before: Path.is_file() raised OSError (File name too long): a traceback.
    with pytest.raises(ConfigError) as info:
        load_config(name)
    message = str(info.value)
    assert message.startswith(f"cannot read config file {name[:40]}"), message
    assert message.endswith(": File name too long") and len(message) < 200
