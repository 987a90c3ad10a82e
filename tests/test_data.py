import gzip

import numpy as np
import pytest

from cnn_mnist.core.errors import DataError
from cnn_mnist.stages import data
from tests.conftest import write_idx


def test_idx_folder_round_trip(idx_folder, tiny_mnist):
    loaded = data.load_mnist(idx_folder)
    for role in ("x_train", "y_train", "x_test", "y_test"):
        np.testing.assert_array_equal(getattr(loaded, role), getattr(tiny_mnist, role))
    assert loaded.source == str(idx_folder)
    assert set(loaded.sha256) == {f"{stem}.gz" for stem in data.IDX_FILES.values()}


def test_raw_idx_files_load(tmp_path, tiny_mnist):
    for role, stem in data.IDX_FILES.items():
        write_idx(tmp_path / stem, getattr(tiny_mnist, role), gz=False)
    np.testing.assert_array_equal(data.load_mnist(tmp_path).x_test, tiny_mnist.x_test)


def test_npz_loads(tmp_path, tiny_mnist):
    path = tmp_path / "mnist.npz"
    np.savez(
        path,
        x_train=tiny_mnist.x_train,
        y_train=tiny_mnist.y_train,
        x_test=tiny_mnist.x_test,
        y_test=tiny_mnist.y_test,
    )
    np.testing.assert_array_equal(data.load_mnist(path).y_train, tiny_mnist.y_train)


def test_env_var_is_used(monkeypatch, idx_folder):
    monkeypatch.setenv(data.ENV_VAR, str(idx_folder))
    assert data.load_mnist(None).source == str(idx_folder)


def test_explicit_path_beats_env_var(monkeypatch, idx_folder, tmp_path):
    monkeypatch.setenv(data.ENV_VAR, str(tmp_path / "elsewhere"))
    assert data.load_mnist(idx_folder).source == str(idx_folder)


def _corrupt(folder, stem, raw_bytes):
    (folder / f"{stem}.gz").write_bytes(gzip.compress(raw_bytes))


@pytest.mark.parametrize(
    "case, expected",
    [
        ("truncated", "truncated or corrupt"),
        ("magic", "magic number 0x00000801, expected 0x00000803"),
        ("short", "too short for an IDX header"),
        ("not_gzip", "cannot read"),
    ],
)
def test_corrupt_image_file_is_named(idx_folder, case, expected):
    stem = data.IDX_FILES["x_train"]
    path = idx_folder / f"{stem}.gz"
    raw = gzip.decompress(path.read_bytes())
    if case == "truncated":
        _corrupt(idx_folder, stem, raw[:-100])
    elif case == "magic":
        _corrupt(idx_folder, stem, b"\x00\x00\x08\x01" + raw[4:])
    elif case == "short":
        _corrupt(idx_folder, stem, b"\x00\x00")
    else:
        path.write_bytes(b"this is not gzip")
    with pytest.raises(DataError) as info:
        data.load_mnist(idx_folder)
    assert stem in str(info.value) and expected in str(info.value)


def test_truncated_gzip_stream(idx_folder):
    path = idx_folder / f"{data.IDX_FILES['y_test']}.gz"
    path.write_bytes(path.read_bytes()[:20])
    with pytest.raises(DataError, match="t10k-labels-idx1-ubyte.gz: cannot read"):
        data.load_mnist(idx_folder)


def test_mismatched_counts(idx_folder, tiny_mnist):
    write_idx(idx_folder / "t10k-labels-idx1-ubyte.gz", tiny_mnist.y_test[:-1])
    with pytest.raises(DataError, match="t10k-labels-idx1-ubyte.gz: 127 labels for 128 images"):
        data.load_mnist(idx_folder)


def test_labels_outside_0_9(idx_folder, tiny_mnist):
    labels = tiny_mnist.y_train.copy()
    labels[3] = 11
    write_idx(idx_folder / "train-labels-idx1-ubyte.gz", labels)
    with pytest.raises(DataError, match="labels from 0 to 11, expected digits 0-9"):
        data.load_mnist(idx_folder)


def test_missing_file_says_how_to_get_data(idx_folder):
    (idx_folder / "t10k-images-idx3-ubyte.gz").unlink()
    with pytest.raises(DataError, match=f"t10k-images-idx3-ubyte.gz.*{data.ENV_VAR}"):
        data.load_mnist(idx_folder)


def test_missing_path(tmp_path, monkeypatch):
    with pytest.raises(DataError, match="no such file or folder.*--data PATH"):
        data.load_mnist(tmp_path / "nowhere")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(data.ENV_VAR, "../elsewhere/mnist")
    with pytest.raises(
        DataError, match=f"from CNN_MNIST_DATA, relative to the current folder {tmp_path}"
    ):
        data.load_mnist(None)


def test_bad_npz(tmp_path):
    (tmp_path / "bad.npz").write_bytes(b"garbage")
    with pytest.raises(DataError, match="bad.npz: not a readable .npz"):
        data.load_mnist(tmp_path / "bad.npz")
    np.savez(tmp_path / "partial.npz", x_train=np.zeros((1, 28, 28), np.uint8))
    with pytest.raises(DataError, match="missing arrays y_train, x_test, y_test"):
        data.load_mnist(tmp_path / "partial.npz")


def test_prepare_shapes_scaling_and_one_hot(tiny_mnist):
    prepared = data.prepare(tiny_mnist, normalize=True, limit_train=100, limit_test=10)
    assert prepared.x_train.shape == (100, 28, 28, 1) and prepared.x_train.dtype == np.float32
    assert prepared.x_test.shape == (10, 28, 28, 1)
    assert 0.0 <= prepared.x_train.min() and prepared.x_train.max() == 1.0
    assert prepared.y_train.shape == (100, 10)
    np.testing.assert_array_equal(prepared.y_train.argmax(1), tiny_mnist.y_train[:100])
    np.testing.assert_array_equal(prepared.y_train.sum(1), np.ones(100))
    raw = data.prepare(tiny_mnist, normalize=False)
    assert raw.x_train.max() == 255.0 and len(raw.x_train) == 512


def test_float_images_already_scaled_are_refused_not_scaled_again(tmp_path, tiny_mnist):
    scaled = {
        "x_train": tiny_mnist.x_train / 255.0,
        "y_train": tiny_mnist.y_train,
        "x_test": tiny_mnist.x_test / 255.0,
        "y_test": tiny_mnist.y_test,
    }
    np.savez(tmp_path / "scaled.npz", **scaled)
    loaded = data.load_mnist(tmp_path / "scaled.npz", dataset="custom")
    with pytest.raises(
        DataError,
        match="scaled.npz: the images hold values 0 to 1 "
        r"\(already scaled\); expected pixel values 0-255",
    ):
        data.prepare(loaded, normalize=True)
    assert data.prepare(loaded, normalize=False).x_train.max() == 1.0  # as given
    np.savez(
        tmp_path / "floats.npz",
        **{**scaled, "x_train": tiny_mnist.x_train * 1.0, "x_test": tiny_mnist.x_test * 1.0},
    )
    prepared = data.prepare(data.load_mnist(tmp_path / "floats.npz", dataset="custom"))
    assert prepared.x_train.max() == 1.0  # floats of 0-255 are scaled like bytes


@pytest.mark.parametrize(
    "change, message",
    [
        (
            {"x_train": np.zeros((0, 28, 28), np.uint8), "y_train": np.zeros((0,), np.uint8)},
            "x_train has no images; expected at least one to train on",
        ),
        (
            {"x_test": np.zeros((0, 28, 28), np.uint8), "y_test": np.zeros((0,), np.uint8)},
            "x_test has no images; expected at least one",
        ),
        (
            {"x_train": np.full((2, 28, 28), "a")},
            "x_train and y_train hold <U1 and uint8; expected numbers",
        ),
        (
            {"y_test": np.full(128, 2.5)},
            "y_test has labels from 2.5 to 2.5, not all whole, expected",
        ),
    ],
)
def test_empty_or_non_numeric_npz_arrays_are_refused(tmp_path, tiny_mnist, change, message):
    arrays = {role: getattr(tiny_mnist, role) for role in data.IDX_FILES}
    np.savez(tmp_path / "odd.npz", **{**arrays, **change})
    with pytest.raises(DataError, match=message):
        data.prepare(data.check_trainable(data.load_mnist(tmp_path / "odd.npz", dataset="custom")))
    whole = {**arrays, "y_test": tiny_mnist.y_test.astype(np.float64)}  # 3.0 is label 3
    np.savez(tmp_path / "whole.npz", **whole)
    assert data.prepare(data.load_mnist(tmp_path / "whole.npz", dataset="custom")).y_test.shape == (
        128,
        10,
    )


def test_one_hot_matches_keras():
    import keras

    labels = np.array([1, 0, 3, 4, 5, 0, 2, 1])  # the lecture's example
    np.testing.assert_array_equal(data.one_hot(labels), keras.utils.to_categorical(labels, 10))


def test_real_mnist_facts(real_mnist_path):
    mnist = data.load_mnist(real_mnist_path)
    assert mnist.x_train.shape == (60000, 28, 28) and mnist.x_test.shape == (10000, 28, 28)
    assert np.bincount(mnist.y_train).tolist() == [
        5923,
        6742,
        5958,
        6131,
        5842,
        5421,
        5918,
        6265,
        5851,
        5949,
    ]
    assert np.bincount(mnist.y_test).tolist() == [
        980,
        1135,
        1032,
        1010,
        982,
        892,
        958,
        1028,
        974,
        1009,
    ]
    assert mnist.y_test[[10, 20, 30]].tolist() == [0, 9, 3]
    assert mnist.x_train.mean() == pytest.approx(33.318, abs=1e-3)
    assert mnist.x_train.std() == pytest.approx(78.567, abs=1e-3)
    for name, digest in mnist.sha256.items():
        assert data.KNOWN_SHA256[name] == digest


def test_altered_standard_file_fails_checksum(real_mnist_path, tmp_path):
    for name in data.IDX_FILES.values():
        (tmp_path / f"{name}.gz").write_bytes((real_mnist_path / f"{name}.gz").read_bytes())
    labels = data.read_idx(real_mnist_path / "t10k-labels-idx1-ubyte.gz").copy()
    labels[0] = (labels[0] + 1) % 10
    write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", labels)
    with pytest.raises(DataError, match="t10k-labels-idx1-ubyte.gz: checksum does not match"):
        data.load_mnist(tmp_path)


# --- datasets: known ones checked by content, custom ones by structure -----------------------

from cnn_mnist.core.errors import WrongDataset  # noqa: E402
from cnn_mnist.stages.data import Mnist  # noqa: E402
from tests.conftest import known_table, synthetic_digits, write_idx_folder  # noqa: E402


@pytest.fixture
def two_sets():
    """Two small synthetic sets standing for MNIST and Fashion-MNIST, and a table of their
    checksums in place of datasets.KNOWN (the real checksums are of the real files)."""
    sets = {}
    for name, seed in (("mnist", 10), ("fashion_mnist", 20)):
        x_train, y_train = synthetic_digits(64, seed=seed)
        x_test, y_test = synthetic_digits(32, seed=seed + 1)
        sets[name] = Mnist(x_train, y_train, x_test, y_test, source=name)
    return sets, {name: known_table(m) for name, m in sets.items()}


def _npz(path, mnist):
    np.savez(
        path, x_train=mnist.x_train, y_train=mnist.y_train, x_test=mnist.x_test, y_test=mnist.y_test
    )
    return path


@pytest.mark.parametrize("dataset", ["mnist", "fashion_mnist"])
def test_known_dataset_with_its_checksums_loads(tmp_path, two_sets, dataset):
    sets, known = two_sets
    folder = write_idx_folder(tmp_path / dataset, sets[dataset])
    loaded = data.load_mnist(folder, dataset=dataset, known=known)
    assert loaded.dataset == dataset
    np.testing.assert_array_equal(loaded.y_test, sets[dataset].y_test)
    from_npz = data.load_mnist(
        _npz(tmp_path / "set.npz", sets[dataset]), dataset=dataset, known=known
    )
    np.testing.assert_array_equal(from_npz.x_train, sets[dataset].x_train)


def test_altered_file_of_a_known_dataset_is_refused(tmp_path, two_sets):
    sets, known = two_sets
    folder = write_idx_folder(tmp_path / "fashion", sets["fashion_mnist"])
    labels = sets["fashion_mnist"].y_test.copy()
    labels[0] = (labels[0] + 1) % 10
    write_idx(folder / "t10k-labels-idx1-ubyte.gz", labels)
    with pytest.raises(
        DataError,
        match="t10k-labels-idx1-ubyte.gz: checksum does not match the original Fashion-MNIST file",
    ):
        data.load_mnist(folder, dataset="fashion_mnist", known=known)
    altered = Mnist(**{**vars(sets["fashion_mnist"]), "y_test": labels})
    with pytest.raises(
        DataError,
        match=r"\(y_test\): checksum does not match the original "
        "Fashion-MNIST",
    ):
        data.load_mnist(_npz(tmp_path / "f.npz", altered), dataset="fashion_mnist", known=known)


@pytest.mark.parametrize(
    "asked, files",
    [("mnist", "fashion_mnist"), ("fashion_mnist", "mnist"), ("custom", "fashion_mnist")],
)
def test_a_known_dataset_under_another_name_is_named(tmp_path, two_sets, asked, files):
    sets, known = two_sets
    title = {"mnist": "MNIST", "fashion_mnist": "Fashion-MNIST"}[files]
    folder = write_idx_folder(tmp_path / files, sets[files])
    with pytest.raises(
        WrongDataset, match=f"this is {title} .*found by checksum.*--dataset {files}"
    ) as caught:
        data.load_mnist(folder, dataset=asked, known=known)
    assert caught.value.found == files and "corrupt" not in str(caught.value)
    with pytest.raises(WrongDataset, match=f"this is {title} "):
        data.load_mnist(_npz(tmp_path / "s.npz", sets[files]), dataset=asked, known=known)


def test_regzipped_or_raw_files_are_checked_by_content(tmp_path, two_sets):
    """Other gzip settings, a stored file name, no gzip at all: the same data is accepted."""
    sets, known = two_sets
    original = write_idx_folder(tmp_path / "original", sets["mnist"])
    regz, raw = tmp_path / "regz", tmp_path / "raw"
    regz.mkdir(), raw.mkdir()
    for stem in data.IDX_FILES.values():
        content = gzip.decompress((original / f"{stem}.gz").read_bytes())
        with gzip.GzipFile(
            stem, "wb", compresslevel=1, fileobj=(regz / f"{stem}.gz").open("wb"), mtime=12345
        ) as out:
            out.write(content)
        (raw / stem).write_bytes(content)
        assert (regz / f"{stem}.gz").read_bytes() != (original / f"{stem}.gz").read_bytes()
    for folder in (regz, raw):
        assert data.load_mnist(folder, known=known).dataset == "mnist"


def test_regzipped_real_mnist_is_accepted(real_mnist_path, tmp_path):
    """`zcat f.gz | gzip -6`: other .gz bytes, the same MNIST."""
    for stem in data.IDX_FILES.values():
        content = gzip.decompress((real_mnist_path / f"{stem}.gz").read_bytes())
        (tmp_path / f"{stem}.gz").write_bytes(gzip.compress(content, compresslevel=6))
        assert files_sha(tmp_path / f"{stem}.gz") != data.KNOWN_SHA256[f"{stem}.gz"]
    loaded = data.load_mnist(tmp_path, test_only=True)
    assert loaded.y_test[[10, 20, 30]].tolist() == [0, 9, 3]


def files_sha(path):
    from cnn_mnist.core.files import sha256

    return sha256(path)


def test_real_fashion_mnist_loads_and_mnist_is_named(real_fashion_path, real_mnist_path):
    fashion = data.load_mnist(real_fashion_path, dataset="fashion_mnist")
    assert fashion.x_train.shape == (60000, 28, 28) and fashion.x_test.shape == (10000, 28, 28)
    assert np.bincount(fashion.y_test).tolist() == [1000] * 10
    with pytest.raises(
        WrongDataset, match="this is Fashion-MNIST .*not MNIST: set data.dataset: fashion_mnist"
    ):
        data.load_mnist(real_fashion_path, test_only=True)
    with pytest.raises(WrongDataset, match="this is MNIST .*not Fashion-MNIST"):
        data.load_mnist(real_mnist_path, test_only=True, dataset="fashion_mnist")


def test_custom_is_checked_by_structure_with_a_note(tmp_path, tiny_mnist, caplog):
    folder = write_idx_folder(tmp_path / "kmnist", tiny_mnist)
    with caplog.at_level("INFO", logger="cnn_mnist.stages.data"):
        loaded = data.load_mnist(folder, dataset="custom")
    assert loaded.dataset == "custom"
    notes = [r.getMessage() for r in caplog.records if "no checksum is known" in r.getMessage()]
    assert len(notes) == 1 and "\n" not in notes[0]
    bad = tiny_mnist.y_test.copy()
    bad[3] = 10
    write_idx(folder / "t10k-labels-idx1-ubyte.gz", bad)
    with pytest.raises(DataError, match="labels from 0 to 10, expected labels 0-9"):
        data.load_mnist(folder, dataset="custom")
    write_idx(folder / "t10k-labels-idx1-ubyte.gz", tiny_mnist.y_test[:-1])
    with pytest.raises(DataError, match="127 labels for 128 images"):
        data.load_mnist(folder, dataset="custom")


def test_custom_needs_a_path(monkeypatch):
    monkeypatch.delenv(data.ENV_VAR, raising=False)
    with pytest.raises(DataError, match="data.dataset custom needs its files: pass a folder"):
        data.load_mnist(None, dataset="custom")


def test_fashion_env_var_is_fashion_mnists_own(monkeypatch, idx_folder, tmp_path):
    monkeypatch.setenv("CNN_FASHION_DATA", str(idx_folder))
    monkeypatch.setenv(data.ENV_VAR, str(tmp_path / "not-here"))
    assert data.load_mnist(None, dataset="fashion_mnist").source == str(idx_folder)


def test_keras_fashion_download_is_checked_in_its_cache(tmp_path, two_sets):
    """Keras's get_file finds the files already in its cache (no network needed) and hands
    them over; their checksums are then checked like a folder's."""
    sets, known = two_sets
    cache = write_idx_folder(
        tmp_path / "keras" / "datasets" / "fashion-mnist", sets["fashion_mnist"]
    )
    loaded = data.load_keras_fashion(cache_dir=tmp_path / "keras", known=known)
    assert loaded.source.startswith("keras.datasets.fashion_mnist") and str(cache) in loaded.source
    np.testing.assert_array_equal(loaded.x_test, sets["fashion_mnist"].x_test)
    images = sets["fashion_mnist"].x_train.copy()
    images[0, 0, 0] ^= 1
    write_idx(cache / "train-images-idx3-ubyte.gz", images)
    with pytest.raises(
        DataError,
        match="checksum does not match the original Fashion-MNIST file.*\n.*Keras's cache",
    ):
        data.load_keras_fashion(cache_dir=tmp_path / "keras", known=known)


def test_keras_fashion_cache_of_debians_files(real_fashion_path, tmp_path):
    cache = tmp_path / "keras" / "datasets" / "fashion-mnist"
    cache.mkdir(parents=True)
    for stem in ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
        (cache / f"{stem}.gz").symlink_to(real_fashion_path / f"{stem}.gz")
    loaded = data.load_keras(dataset="fashion_mnist", test_only=True, cache_dir=tmp_path / "keras")
    assert loaded.dataset == "fashion_mnist" and len(loaded.x_test) == 10000


def test_test_only_data_prepares_for_evaluation(idx_folder):
    # predict, evaluate and the tests read the test files alone: no training images to check.
    loaded = data.load_mnist(idx_folder, test_only=True)
    assert len(loaded.x_train) == 0
    assert data.prepare(loaded, True, None, 10).images_test.shape[0] == 10
    with pytest.raises(DataError, match="x_train has no images; expected at least one to train"):
        data.check_trainable(loaded)


def test_a_variant_keeping_the_labels_of_a_known_set_is_custom(tmp_path, two_sets, real_mnist_path):
    """A set is known by its images: MNIST's images transposed with MNIST's own labels (as
    rotated, permuted or corrupted MNIST keep them) is a custom set, in an .npz or IDX files;
    MNIST's own images under `custom` are still named as MNIST."""
    sets, known = two_sets
    mnist = sets["mnist"]
    variant = Mnist(
        mnist.x_train.transpose(0, 2, 1).copy(),
        mnist.y_train,
        mnist.x_test.transpose(0, 2, 1).copy(),
        mnist.y_test,
        source="variant",
    )
    loaded = data.load_mnist(_npz(tmp_path / "t.npz", variant), dataset="custom", known=known)
    np.testing.assert_array_equal(loaded.y_test, mnist.y_test)
    folder = write_idx_folder(tmp_path / "variant", variant)
    assert data.load_mnist(folder, dataset="custom", known=known).dataset == "custom"
    with pytest.raises(WrongDataset, match="this is MNIST"):
        data.load_mnist(_npz(tmp_path / "m.npz", mnist), dataset="custom", known=known)
    # The real test set's labels, found by the real checksum, no longer refuse it.
    real = data.load_mnist(real_mnist_path, test_only=True)
    np.savez(
        tmp_path / "real.npz",
        x_train=real.x_test[:100].transpose(0, 2, 1),
        y_train=real.y_test[:100],
        x_test=real.x_test.transpose(0, 2, 1),
        y_test=real.y_test,
    )
    assert data.load_mnist(tmp_path / "real.npz", dataset="custom").dataset == "custom"
