"""Fashion-MNIST end to end, as a user runs it: `cnn train --config fashion` on the real files
(Debian's dataset-fashion-mnist, or $CNN_FASHION_DATA), then `cnn predict` and `cnn evaluate`
as subprocesses, which learn the dataset and its class names from the model file."""

import json
import os

import pytest

from tests.conftest import FASHION_NAMES, cnn_process, train_in

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def _env() -> dict:
    """No data variables: the commands find the data from --data and the model file alone."""
    return {k: v for k, v in os.environ.items() if k not in ("CNN_MNIST_DATA", "CNN_FASHION_DATA")}


def run_cnn(args, cwd, timeout=900):
    return cnn_process(args, cwd, _env(), timeout)


@pytest.fixture(scope="module")
def fashion_run(tmp_path_factory, real_fashion_path):
    """The shipped fashion config as it is (2 epochs), on a slice of 6,000 images."""
    cwd = tmp_path_factory.mktemp("fashion-run")
    result, record = train_in(
        cwd,
        [
            "--config",
            "fashion",
            "--data",
            str(real_fashion_path),
            "--seed",
            "3",
            "--set",
            "data.limit_train=6000",
            "--set",
            "data.limit_test=1000",
        ],
        _env(),
    )
    return cwd, result, record


def test_train_reports_fashion_mnists_classes(fashion_run):
    cwd, result, record = fashion_run
    assert record["dataset"] == "fashion_mnist" and record["data"]["class_names"] == FASHION_NAMES
    assert record["data"]["num_train"] == 6000 and record["data"]["num_test"] == 1000
    # Ten classes, chance is 0.1; this slice reached 0.845-0.854 (seeds 3-5, bfloat16 and
    # float32), all 60,000 images 0.906-0.910 (bench/RESULTS.md).
    assert record["metrics"]["test_accuracy"] > 0.75
    assert "rows: true class" in result.stdout
    for k, name in enumerate(FASHION_NAMES):
        assert f"\n{k} {name} " in result.stdout
    saved = json.loads((cwd / record["paths"]["confusion_matrix_json"]).read_text())
    assert saved["class_names"] == FASHION_NAMES


def test_predict_a_test_item_by_index_shows_its_class_name(fashion_run, real_fashion_path):
    cwd, _, _ = fashion_run
    # No --dataset: the model file says Fashion-MNIST. Test item 0 is an ankle boot.
    shown = run_cnn(
        [
            "predict",
            "--index",
            "0",
            "--model",
            "models/fashion.h5",
            "--data",
            str(real_fashion_path),
        ],
        cwd,
    )
    assert shown.returncode == 0, shown.stderr[-3000:]
    line = shown.stdout.strip().splitlines()[-1]
    assert (
        line.startswith("index 0: predicted ")
        and line.split("predicted ")[1].split(" (")[0] in FASHION_NAMES
    )
    assert "true label Ankle boot" in line
    as_json = run_cnn(
        [
            "predict",
            "--index",
            "0",
            "--json",
            "--model",
            "models/fashion.h5",
            "--data",
            str(real_fashion_path),
        ],
        cwd,
    )
    item = json.loads(as_json.stdout)[0]
    assert item["label"] == 9 and item["label_class_name"] == "Ankle boot"
    assert item["class_name"] == FASHION_NAMES[item["predicted"]]


def test_evaluate_refuses_mnist_for_a_fashion_model(fashion_run, real_mnist_path):
    cwd, _, _ = fashion_run
    refused = run_cnn(
        ["evaluate", "--model", "models/fashion.h5", "--data", str(real_mnist_path)], cwd
    )
    assert refused.returncode == 1
    assert refused.stderr.startswith(
        "error: model models/fashion.h5 was trained on Fashion-MNIST, but "
    )
    assert "is MNIST (found by checksum)" in refused.stderr and "Traceback" not in refused.stderr
