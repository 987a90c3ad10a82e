"""The datasets the tool knows: their names, class names and checksums.

A known dataset (MNIST, Fashion-MNIST) is checked by content: the SHA-256 of each file's IDX
bytes, whatever gzip wrapped them (Debian's Fashion-MNIST files and a re-gzipped MNIST hold the
same data in other .gz bytes). The authors' own checksums of their .gz files are accepted too.
A `custom` dataset (any 28x28 ten-class set) has no checksum; only its structure is checked.
No numpy or TensorFlow here: the config schema reads the names.
"""

from __future__ import annotations

import hashlib
from collections.abc import Set
from dataclasses import dataclass

DATASETS = ("mnist", "fashion_mnist", "custom")
TITLES = {"mnist": "MNIST", "fashion_mnist": "Fashion-MNIST", "custom": "a custom dataset"}
DIGITS = [str(d) for d in range(10)]
CLASS_NAMES = {
    "mnist": DIGITS,
    # Fashion-MNIST's README (zalandoresearch/fashion-mnist), label 0 to 9.
    "fashion_mnist": [
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
    ],
}
# Where `cnn` looks for a dataset's folder when no path is given (else: Keras's download).
ENV_VARS = {"mnist": "CNN_MNIST_DATA", "fashion_mnist": "CNN_FASHION_DATA"}


@dataclass(frozen=True)
class KnownFile:
    """One file of a known dataset: its record count, the SHA-256 of its IDX bytes (what is
    checked), and the checksums its authors publish for their .gz (SHA-256 or MD5)."""

    records: int
    sha256: str
    published: tuple[str, ...] = ()


# By dataset, then by IDX file name (without .gz).
KNOWN: dict[str, dict[str, KnownFile]] = {
    "mnist": {
        "train-images-idx3-ubyte": KnownFile(
            60000,
            "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
            ("0b367032e93c5d0cea0925647cfdb18614af8ee15f83e6f2fc2ad904a6835971",),
        ),
        "train-labels-idx1-ubyte": KnownFile(
            60000,
            "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
            ("1787548bbe0bff1ec2ecdc0ef292b02df999e2d1a6002d27500982c652b17203",),
        ),
        "t10k-images-idx3-ubyte": KnownFile(
            10000,
            "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
            ("1a1a05eab793c14bb050b398624a11b0ffd1a2953baed553b1b9bd079e2a20be",),
        ),
        "t10k-labels-idx1-ubyte": KnownFile(
            10000,
            "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
            ("b91679a0acfe4ba0e50a2437a903084cba1f5f92592b016a25a7dfd00455798b",),
        ),
    },
    # The IDX SHA-256s were computed from Debian's dataset-fashion-mnist, whose files unpack to
    # the published sizes (47,040,016, 60,008, 7,840,016 and 10,008 bytes); the MD5s are the
    # authors', of their .gz files (Debian's .gz bytes differ: their gzip headers were rewritten).
    "fashion_mnist": {
        "train-images-idx3-ubyte": KnownFile(
            60000,
            "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
            ("8d4fb7e6c68d591d4c3dfef9ec88bf0d",),
        ),
        "train-labels-idx1-ubyte": KnownFile(
            60000,
            "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
            ("25c81989df183df01b3e8a0aad5dffbe",),
        ),
        "t10k-images-idx3-ubyte": KnownFile(
            10000,
            "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
            ("bef4ecab320f06d8554ea6380940ec79",),
        ),
        "t10k-labels-idx1-ubyte": KnownFile(
            10000,
            "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
            ("bb300cfdad3c16e7a12a480ee83cd310",),
        ),
    },
}


def default_class_names(dataset: str) -> list[str]:
    """A known dataset's class names; the digits 0-9 for a custom one without names."""
    return list(CLASS_NAMES.get(dataset, DIGITS))


def wrapper_digests(data: bytes) -> set[str]:
    """The SHA-256 and MD5 of a file's own bytes (for the authors' .gz checksums)."""
    return {hashlib.sha256(data).hexdigest(), hashlib.md5(data, usedforsecurity=False).hexdigest()}


def identify(
    stem: str,
    sha256: str,
    wrapper: Set[str] = frozenset(),
    known: dict[str, dict[str, KnownFile]] | None = None,
) -> str | None:
    """The known dataset whose file `stem` has this content (or these .gz checksums), or None."""
    for dataset, table in (KNOWN if known is None else known).items():
        spec = table.get(stem)
        if spec and (spec.sha256 == sha256 or wrapper & set(spec.published)):
            return dataset
    return None
