"""Data augmentation (cnn_mnist/stages/augment.py, `data.augment`): each change does to pictures what
it says, the draws are keyed by (seed, epoch, batch), off is the plain pipeline bit for bit,
and the config, the fit loops, sweeps and the shipped recipe take it."""

from __future__ import annotations

import numpy as np
import pytest

from cnn_mnist.config.load import load_config
from cnn_mnist.config.schema import AugmentConfig
from cnn_mnist.core.errors import ConfigError
from tests.conftest import REPO, TINY_LAYERS


def ring(n: int = 16, radius: float = 7.0, width: float = 1.5, seed: int = 0) -> np.ndarray:
    """(n, 28, 28, 1) float32 in [0, 1]: rings (a drawn 0) a little off-centre, soft-edged."""
    rng = np.random.default_rng(seed)
    rows, cols = np.mgrid[0:28, 0:28].astype(np.float32)
    out = np.zeros((n, 28, 28, 1), np.float32)
    for i in range(n):
        cy, cx = 13.5 + rng.uniform(-1, 1, 2)
        distance = np.hypot(rows - cy, cols - cx)
        out[i, ..., 0] = np.clip(width - np.abs(distance - radius), 0, 1)
    return out


def bar(n: int = 16) -> np.ndarray:
    """(n, 28, 28, 1): a vertical bar 2 pixels wide and 16 tall through the centre (a 1)."""
    out = np.zeros((n, 28, 28, 1), np.float32)
    out[:, 6:22, 13:15] = 1.0
    return out


def run(x: np.ndarray, seed: int = 1, epoch: int = 0, batch: int = 0, **settings) -> np.ndarray:
    from cnn_mnist.stages.augment import augment_batch, batch_key

    return augment_batch(x, batch_key(seed, epoch, batch), AugmentConfig(**settings)).numpy()


def centre_of_mass(x: np.ndarray) -> np.ndarray:
    """(n, 2): each image's ink-weighted (row, column)."""
    rows, cols = np.mgrid[0:28, 0:28]
    ink = x[..., 0].sum(axis=(1, 2))
    return np.stack(
        [(x[..., 0] * rows).sum(axis=(1, 2)) / ink, (x[..., 0] * cols).sum(axis=(1, 2)) / ink],
        axis=1,
    )


def axis_angle(x: np.ndarray) -> np.ndarray:
    """(n,): the angle in degrees of each image's principal axis from the vertical."""
    rows, cols = np.mgrid[0:28, 0:28]
    angles = []
    for image in x[..., 0]:
        w = image / image.sum()
        r, c = (w * rows).sum(), (w * cols).sum()
        crr, ccc = (w * (rows - r) ** 2).sum(), (w * (cols - c) ** 2).sum()
        crc = (w * (rows - r) * (cols - c)).sum()
        angles.append(np.degrees(0.5 * np.arctan2(2 * crc, crr - ccc)))
    return np.array(angles)


# --- what each change does ---------------------------------------------------------------------


def test_a_shift_moves_the_centre_of_mass_within_its_bound_and_keeps_the_ink():
    x = ring(64)
    out = run(x, shift=3)
    moved = centre_of_mass(out) - centre_of_mass(x)
    assert np.abs(moved).max() <= 3 + 1e-3  # each direction drawn from -3 to 3 pixels
    assert np.abs(moved).max() > 2 and np.abs(moved).mean() > 0.8  # really spread over the range
    assert (moved[:, 0] > 0.5).any() and (moved[:, 0] < -0.5).any()  # both ways, rows
    assert (moved[:, 1] > 0.5).any() and (moved[:, 1] < -0.5).any()  # and columns
    np.testing.assert_allclose(out.sum(axis=(1, 2, 3)), x.sum(axis=(1, 2, 3)), rtol=0.02)


def test_a_rotation_turns_a_bar_by_at_most_its_bound():
    x = bar(64)
    turned = axis_angle(run(x, rotation=15))
    assert np.abs(turned).max() <= 15 + 0.5
    assert np.abs(turned).max() > 10 and (turned > 3).any() and (turned < -3).any()
    np.testing.assert_allclose(centre_of_mass(run(x, rotation=15)), centre_of_mass(x), atol=0.1)


def test_a_zoom_scales_the_digit_within_its_bound():
    x = ring(64, radius=6)
    out = run(x, zoom=0.2)
    ratio = np.sqrt(out[..., 0].sum(axis=(1, 2)) / x[..., 0].sum(axis=(1, 2)))  # area: scale^2
    assert ratio.min() >= 0.8 - 0.03 and ratio.max() <= 1.2 + 0.03
    assert ratio.min() < 0.9 and ratio.max() > 1.1  # bigger and smaller both drawn


def test_thickness_thickens_or_thins_the_strokes_between_erosion_and_dilation():
    import tensorflow as tf

    x = ring(64, width=2.0)
    out = run(x, thickness=1.0)
    dilated = tf.nn.max_pool2d(x, 3, 1, "SAME").numpy()
    eroded = -tf.nn.max_pool2d(-x, 3, 1, "SAME").numpy()
    assert (out <= dilated + 1e-6).all() and (out >= eroded - 1e-6).all()
    change = out.sum(axis=(1, 2, 3)) / x.sum(axis=(1, 2, 3))
    assert change.max() > 1.3 and change.min() < 0.7  # more ink and less ink, both drawn
    assert np.array_equal(out > 0, (out > 0) & (dilated > 0))  # no ink where no stroke was near
    small = run(x, thickness=0.2).sum(axis=(1, 2, 3)) / x.sum(axis=(1, 2, 3))
    assert np.abs(small - 1).max() < np.abs(change - 1).max()  # a smaller bound, a smaller change


def test_elastic_distortion_keeps_the_shape_but_moves_the_pixels():
    from scipy import ndimage

    x = ring(32)
    out = run(x, elastic_alpha=34, elastic_sigma=4)
    assert np.abs(out - x).max() > 0.5  # pixel by pixel, another picture

    # The shape, seen at the scale of a stroke (blurred by 1.5 pixels): still that ring, and
    # nearer to it than to a bar drawn in the same place.
    def shape(image):
        return ndimage.gaussian_filter(image, 1.5).ravel()

    similar = [np.corrcoef(shape(a), shape(b))[0, 1] for a, b in zip(x[..., 0], out[..., 0])]
    assert min(similar) > 0.45 and np.mean(similar) > 0.65
    line = shape(bar(1)[0, ..., 0])
    assert all(np.corrcoef(shape(b), line)[0, 1] < s for b, s in zip(out[..., 0], similar))
    # A warp stretches some parts and squeezes others: the ink of one image changes, but
    # over a batch it evens out, and the digit stays where it was.
    ink = out.sum(axis=(1, 2, 3)) / x.sum(axis=(1, 2, 3))
    assert abs(ink.mean() - 1) < 0.1 and ink.min() > 0.5
    moved = np.abs(centre_of_mass(out) - centre_of_mass(x))  # sigma 4: the field moves the
    assert moved.max() < 4 and moved.mean() < 1.5  # digit a little as a whole, too
    # Stronger alpha, further from the original; a larger sigma, a smoother (milder) warp.
    far = np.abs(run(x, elastic_alpha=80, elastic_sigma=4) - x).mean()
    assert (
        far > np.abs(out - x).mean() > np.abs(run(x, elastic_alpha=8, elastic_sigma=4) - x).mean()
    )


def test_the_elastic_field_is_the_gaussian_smoothing_of_uniform_noise():
    """The smoothing matrix is scipy's gaussian_filter (mode 'reflect', truncated at 3 sigma)."""
    from scipy import ndimage

    from cnn_mnist.stages.augment import gaussian_matrix

    noise = np.random.default_rng(0).uniform(-1, 1, (28, 28))
    matrix = gaussian_matrix(28, 4.0).numpy()
    np.testing.assert_allclose(
        matrix @ noise @ matrix.T,
        ndimage.gaussian_filter(noise, 4.0, mode="reflect", truncate=3.0),
        atol=1e-5,
    )


def test_draws_are_a_function_of_seed_epoch_and_batch_and_each_image_has_its_own():
    x = ring(8)
    settings = dict(shift=2, rotation=10, zoom=0.1, thickness=0.5, elastic_alpha=20)
    first = run(x, 1, 0, 0, **settings)
    np.testing.assert_array_equal(first, run(x, 1, 0, 0, **settings))
    for other in ((2, 0, 0), (1, 1, 0), (1, 0, 1)):
        assert not np.allclose(first, run(x, *other, **settings))
    same = run(np.repeat(x[:1], 4, axis=0), **settings)
    assert not np.allclose(same[0], same[1])  # the same digit twice: two different changes
    assert first.min() >= 0 and first.max() <= 1 + 1e-6  # still pixels in [0, 1]


# --- in the input pipeline ----------------------------------------------------------------


def batches(dataset) -> list[tuple[np.ndarray, np.ndarray]]:
    return [(x.numpy(), y.numpy()) for x, y in dataset]


@pytest.mark.parametrize("augment", [None, AugmentConfig(), AugmentConfig(elastic_sigma=6)])
def test_off_is_the_plain_pipeline_bit_for_bit(tiny_mnist, augment):
    from cnn_mnist.stages.data import prepare_images
    from cnn_mnist.stages.fit import make_dataset

    images, labels = tiny_mnist.x_train[:100], tiny_mnist.y_train[:100].astype(np.int64)
    got = batches(make_dataset(images, labels, 32, True, shuffle=True, seed=5, augment=augment))
    plain = batches(make_dataset(images, labels, 32, True, shuffle=True, seed=5))
    for (x, y), (px, py) in zip(got, plain):
        assert x.tobytes() == px.tobytes() and y.tobytes() == py.tobytes()
    # ... and the plain one is the NumPy preparation of the shuffled images.
    order = np.concatenate([y.argmax(1) for _, y in plain])
    assert sorted(order) == sorted(labels)
    x = np.concatenate([x for x, _ in plain])
    assert {x_i.tobytes() for x_i in x} == {p.tobytes() for p in prepare_images(images)}


def test_augmented_batches_change_the_images_not_the_labels_and_repeat_per_epoch(tiny_mnist):
    import tensorflow as tf

    from cnn_mnist.stages.fit import make_dataset

    images, labels = tiny_mnist.x_train[:96], tiny_mnist.y_train[:96].astype(np.int64)
    on = AugmentConfig(shift=2, rotation=10, elastic_alpha=20)
    plain = batches(make_dataset(images, labels, 32, True, shuffle=True, seed=5))
    epoch = tf.Variable(0, dtype=tf.int64)
    dataset = make_dataset(images, labels, 32, True, shuffle=True, seed=5, epoch=epoch, augment=on)
    first = batches(dataset)
    for (x, y), (px, py) in zip(first, plain):
        np.testing.assert_array_equal(y, py)  # the same order and labels
        assert not np.allclose(x, px)
        assert x.min() >= 0 and x.max() <= 1 + 1e-6
    again = batches(dataset)
    assert all(np.array_equal(a[0], b[0]) for a, b in zip(first, again))  # the same epoch: same
    epoch.assign(1)
    second = batches(dataset)
    # A new process at epoch 1 (a resumed run) makes what the first process made at epoch 1.
    fresh = batches(
        make_dataset(images, labels, 32, True, shuffle=True, seed=5, epoch=1, augment=on)
    )
    assert all(np.array_equal(a[0], b[0]) for a, b in zip(second, fresh))
    assert not np.allclose(second[0][0], first[0][0])  # another epoch, other draws


def test_normalize_false_augments_raw_pixels_alike(tiny_mnist):
    from cnn_mnist.stages.fit import make_dataset

    images, labels = tiny_mnist.x_train[:32], tiny_mnist.y_train[:32].astype(np.int64)
    on = AugmentConfig(rotation=10, thickness=0.5)
    scaled = batches(make_dataset(images, labels, 32, True, seed=5, augment=on))[0][0]
    raw = batches(make_dataset(images, labels, 32, False, seed=5, augment=on))[0][0]
    np.testing.assert_allclose(raw / 255, scaled, atol=1e-5)


def test_the_distributed_loop_augments_as_keras_fit_does(tiny_mnist, tmp_path):
    """One replica under a strategy: the custom loop reads the same augmented batches as
    `Model.fit` (both through train.train_dataset), so they train alike."""
    from cnn_mnist.config.schema import ModelConfig
    from cnn_mnist.core.runtime import seed_everything
    from cnn_mnist.stages import fit
    from cnn_mnist.stages.data import prepare
    from cnn_mnist.stages.model import build_model, compile_model
    from tests.conftest import fit_both_ways

    config = load_config(
        sets=[
            "training.epochs=2",
            "training.batch_size=64",
            "training.seed=3",
            "tensorboard.enabled=false",
            "data.augment.rotation=10",
            "data.augment.elastic_alpha=20",
        ]
    )
    model_config = ModelConfig.model_validate({"layers": TINY_LAYERS})
    data = prepare(tiny_mnist, True, None, None, config.data.augment)
    histories, _, _ = fit_both_ways(config, model_config, data, tmp_path)
    for name, values in histories["fit"].items():
        np.testing.assert_allclose(histories["distributed"][name], values, rtol=1e-4, atol=1e-5)
    plain = prepare(tiny_mnist, True, None, None)
    seed_everything(3)
    model = compile_model(build_model(model_config), config.compile)
    unaugmented = fit.fit(
        model,
        plain,
        training=config.training,
        tensorboard=config.tensorboard,
        run_dir=tmp_path / "plain",
        verbose=0,
    )
    assert unaugmented["loss"] != histories["fit"]["loss"]  # the augmentation was really on


# --- the config -------------------------------------------------------------------------------


def test_off_by_default_and_recorded_in_the_config():
    config = load_config()
    assert config.data.augment == AugmentConfig() and not config.data.augment.active
    assert config.to_dict()["data"]["augment"] == {
        "shift": 0.0,
        "rotation": 0.0,
        "zoom": 0.0,
        "thickness": 0.0,
        "elastic_alpha": 0.0,
        "elastic_sigma": 4.0,
    }
    on = load_config(sets=["data.augment.rotation=10", "data.augment.shift=2"])
    assert on.data.augment.active and (on.data.augment.rotation, on.data.augment.shift) == (10, 2)
    assert not load_config(sets=["data.augment.elastic_sigma=6"]).data.augment.active


@pytest.mark.parametrize(
    "setting, message",
    [
        (
            "data.augment.rotate=10",
            "data.augment.rotate: unknown key (did you mean 'rotation'?); valid keys here: shift, "
            "rotation, zoom, thickness, elastic_alpha, elastic_sigma",
        ),
        ("data.augment.shift=two", "data.augment.shift: Input should be a valid number, got 'two'"),
        ("data.augment.shift=true", "data.augment.shift: Input should be a valid number, got True"),
        (
            "data.augment.rotation=-5",
            "data.augment.rotation: Input should be greater than or equal to 0",
        ),
        ("data.augment.zoom=1", "data.augment.zoom: Input should be less than 1"),
        (
            "data.augment.thickness=2",
            "data.augment.thickness: Input should be less than or equal to 1",
        ),
        (
            "data.augment.elastic_sigma=0.5",
            "data.augment.elastic_sigma: Input should be greater than or equal to 1",
        ),
        (
            "data.augment=on",
            "data.augment: Input should be a valid dictionary or instance of AugmentConfig",
        ),
    ],
)
def test_bad_settings_name_the_key_path(setting, message):
    with pytest.raises(ConfigError) as error:
        load_config(sets=[setting])
    assert message in str(error.value)


def test_a_bad_key_in_a_file_names_the_key_path(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("data:\n  augment:\n    elastic: 34\n")
    with pytest.raises(
        ConfigError,
        match=r"invalid config bad.yaml: data\.augment\.elastic: "
        r"unknown key .*valid keys here: shift, rotation, zoom, "
        r"thickness, elastic_alpha, elastic_sigma",
    ):
        load_config(path)


def test_every_key_is_described():
    for name, field in AugmentConfig.model_fields.items():
        assert field.description and len(field.description) > 30, name


def test_a_sweep_searches_augment_keys_by_key_path(tmp_path):
    import yaml

    from cnn_mnist.tools.sweep import plan, trial_config

    path = tmp_path / "search.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "training": {"seed": 1},
                "sweep": {
                    "parameters": {
                        "data.augment.rotation": {"low": 0, "high": 15},
                        "data.augment.elastic_alpha": {"values": [0, 34]},
                    },
                    "trials": 2,
                },
            }
        )
    )
    sweep = plan(str(path))
    trial = trial_config(sweep, {"data.augment.rotation": 7.5, "data.augment.elastic_alpha": 34})
    assert (trial.data.augment.rotation, trial.data.augment.elastic_alpha) == (7.5, 34)
    assert trial.data.augment.shift == 0  # the rest as configured
    path.write_text(
        yaml.safe_dump({"sweep": {"parameters": {"data.augment.zoom": {"low": 0.0, "high": 1.5}}}})
    )
    with pytest.raises(
        ConfigError,
        match=r"sweep.parameters.data.augment.zoom: 1.5 does not fit "
        r"the config: data.augment.zoom: Input should be less",
    ):
        plan(str(path))


def test_the_handwriting_recipe_loads_and_is_linked_like_the_others():
    config = load_config("handwriting")
    assert config.data.augment.active
    link = REPO / "configs" / "handwriting.yaml"
    assert (
        link.is_symlink()
        and link.read_text()
        == (REPO / "cnn_mnist" / "config" / "shipped" / "handwriting.yaml").read_text()
    )
    assert load_config(link) == config


# --- a real run ------------------------------------------------------------------------------


def test_a_tiny_model_trains_with_augmentation_and_run_json_records_it(tmp_path, tiny_config_file):
    """`cnn train` as a user runs it, with the augmentation set in the config file."""
    import json
    import os

    import yaml

    from tests.conftest import cnn_process

    raw = yaml.safe_load(tiny_config_file.read_text())
    raw["data"]["augment"] = {
        "rotation": 8,
        "zoom": 0.05,
        "thickness": 0.3,
        "elastic_alpha": 10,
        "elastic_sigma": 4,
    }
    raw["training"]["epochs"] = 3
    tiny_config_file.write_text(yaml.safe_dump(raw))
    result = cnn_process(
        ["train", "--config", str(tiny_config_file), "--quiet"], tmp_path, dict(os.environ)
    )
    assert result.returncode == 0, result.stderr[-3000:]
    (path,) = (tmp_path / "logs").glob("*/run.json")
    record = json.loads(path.read_text())
    assert record["status"] == "completed"
    assert record["config"]["data"]["augment"] == {
        "shift": 0.0,
        "rotation": 8.0,
        "zoom": 0.05,
        "thickness": 0.3,
        "elastic_alpha": 10.0,
        "elastic_sigma": 4.0,
    }
    assert (
        yaml.safe_load((path.parent / "config.yaml").read_text())["data"]["augment"]
        == record["config"]["data"]["augment"]
    )
    assert record["metrics"]["test_accuracy"] > 0.5  # learnt through the changes (chance: 0.1)
