import gzip
import hashlib

import pytest

from cnn_mnist.core import datasets
from cnn_mnist.core.datasets import KnownFile


def test_known_datasets_have_ten_names_and_four_files_each():
    assert datasets.default_class_names("mnist") == [str(d) for d in range(10)]
    assert datasets.default_class_names("fashion_mnist") == [
        "T-shirt/top",
        "Trouser",
        "Pullover",
        "Dress",
        "Coat",
        "Sandal",
        "Shirt",
        "Sneaker",
        "Bag",
        "Ankle boot",
    ]
    assert datasets.default_class_names("custom") == [str(d) for d in range(10)]
    for name, table in datasets.KNOWN.items():
        assert name in datasets.DATASETS
        assert sorted(table) == sorted(
            [
                "train-images-idx3-ubyte",
                "train-labels-idx1-ubyte",
                "t10k-images-idx3-ubyte",
                "t10k-labels-idx1-ubyte",
            ]
        )
        assert all(len(spec.sha256) == 64 and spec.published for spec in table.values())


def test_identify_by_content_or_by_the_published_gz_checksum():
    raw = b"\x00\x00\x08\x01\x00\x00\x00\x03\x01\x02\x03"
    packed = gzip.compress(raw, mtime=0)
    known = {
        "mnist": {
            "t10k-labels-idx1-ubyte": KnownFile(
                3, hashlib.sha256(raw).hexdigest(), (hashlib.md5(packed).hexdigest(),)
            )
        }
    }
    stem = "t10k-labels-idx1-ubyte"
    assert datasets.identify(stem, hashlib.sha256(raw).hexdigest(), known=known) == "mnist"
    # The authors' .gz checksum is accepted as well (here with the content sum unknown).
    assert datasets.identify(stem, "0" * 64, datasets.wrapper_digests(packed), known) == "mnist"
    assert datasets.identify(stem, "0" * 64, datasets.wrapper_digests(b"other"), known) is None
    assert (
        datasets.identify("train-labels-idx1-ubyte", hashlib.sha256(raw).hexdigest(), known=known)
        is None
    )


@pytest.mark.parametrize("dataset", ["mnist", "fashion_mnist"])
def test_real_files_match_the_known_checksums(dataset, request):
    """The table itself: every real file unpacks to the published size and is identified as
    its dataset, by content."""
    from cnn_mnist.stages.data import idx_bytes

    folder = request.getfixturevalue(
        "real_mnist_path" if dataset == "mnist" else "real_fashion_path"
    )
    for stem, spec in datasets.KNOWN[dataset].items():
        raw, packed = idx_bytes(folder / f"{stem}.gz")
        assert len(raw) == 16 + spec.records * 784 if "images" in stem else 8 + spec.records
        assert datasets.identify(stem, hashlib.sha256(raw).hexdigest(), known=None) == dataset
