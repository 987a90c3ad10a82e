import gzip

import numpy as np
import pytest

from cnn_mnist import data
from cnn_mnist.errors import DataError
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
    np.savez(path, x_train=tiny_mnist.x_train, y_train=tiny_mnist.y_train,
             x_test=tiny_mnist.x_test, y_test=tiny_mnist.y_test)
    np.testing.assert_array_equal(data.load_mnist(path).y_train, tiny_mnist.y_train)


def test_env_var_is_used(monkeypatch, idx_folder):
    monkeypatch.setenv(data.ENV_VAR, str(idx_folder))
    assert data.load_mnist(None).source == str(idx_folder)


def test_explicit_path_beats_env_var(monkeypatch, idx_folder, tmp_path):
    monkeypatch.setenv(data.ENV_VAR, str(tmp_path / "elsewhere"))
    assert data.load_mnist(idx_folder).source == str(idx_folder)


def _corrupt(folder, stem, raw_bytes):
    (folder / f"{stem}.gz").write_bytes(gzip.compress(raw_bytes))


@pytest.mark.parametrize("case, expected", [
    ("truncated", "truncated or corrupt"),
    ("magic", "magic number 0x00000801, expected 0x00000803"),
    ("short", "too short for an IDX header"),
    ("not_gzip", "cannot read"),
])
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
    with pytest.raises(DataError, match=f"from CNN_MNIST_DATA, relative to the current folder {tmp_path}"):
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


def test_one_hot_matches_keras():
    import keras

    labels = np.array([1, 0, 3, 4, 5, 0, 2, 1])  # the lecture's example
    np.testing.assert_array_equal(data.one_hot(labels), keras.utils.to_categorical(labels, 10))


def test_real_mnist_facts(real_mnist_path):
    mnist = data.load_mnist(real_mnist_path)
    assert mnist.x_train.shape == (60000, 28, 28) and mnist.x_test.shape == (10000, 28, 28)
    assert np.bincount(mnist.y_train).tolist() == [5923, 6742, 5958, 6131, 5842, 5421, 5918,
                                                   6265, 5851, 5949]
    assert np.bincount(mnist.y_test).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028,
                                                  974, 1009]
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
