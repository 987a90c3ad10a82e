import json

import numpy as np
import pytest

from cnn_mnist.core.datasets import DIGITS
from cnn_mnist.stages import evaluate


def test_confusion_matrix_counts():
    labels = np.array([0, 0, 1, 2, 2, 2])
    predicted = np.array([0, 1, 1, 2, 2, 0])
    cm = evaluate.confusion_matrix(labels, predicted)
    assert cm.shape == (10, 10) and cm.sum() == 6
    assert cm[0, 0] == 1 and cm[0, 1] == 1 and cm[2, 2] == 2 and cm[2, 0] == 1


def test_precision_recall_f1():
    cm = evaluate.confusion_matrix(np.array([0, 0, 1, 2, 2, 2]), np.array([0, 1, 1, 2, 2, 0]))
    precision, recall, f1, support = evaluate.per_class(cm)
    assert precision[0] == pytest.approx(0.5) and recall[0] == pytest.approx(0.5)
    assert precision[1] == pytest.approx(0.5) and recall[1] == pytest.approx(1.0)
    assert precision[2] == pytest.approx(1.0) and recall[2] == pytest.approx(2 / 3)
    assert f1[2] == pytest.approx(0.8)
    assert precision[5] == 0 and support.tolist()[:3] == [2, 1, 3]


def test_crossentropy_matches_keras():
    import keras

    rng = np.random.default_rng(0)
    probabilities = rng.dirichlet(np.ones(10), 50).astype(np.float32)
    probabilities[0] = np.eye(10)[3]  # a certain, wrong prediction: clipped, not infinite
    labels = rng.integers(0, 10, 50)
    expected = keras.losses.categorical_crossentropy(np.eye(10)[labels], probabilities)
    assert evaluate.crossentropy(probabilities.astype(np.float64), labels) == pytest.approx(
        float(np.mean(expected)), rel=1e-5
    )


def test_evaluate_matches_model_evaluate(tiny_mnist):
    from cnn_mnist.config.load import validate
    from cnn_mnist.stages.data import prepare
    from cnn_mnist.stages.model import build_model, compile_model
    from tests.conftest import TINY_LAYERS

    config = validate({"model": {"layers": TINY_LAYERS}})
    data = prepare(tiny_mnist)
    model = compile_model(build_model(config.model), config.compile)
    model.fit(data.x_train, data.y_train, epochs=1, batch_size=64, verbose=0)
    ours = evaluate.evaluate(model, data.x_test, data.labels_test)
    loss, accuracy = model.evaluate(data.x_test, data.y_test, verbose=0)
    assert ours.loss == pytest.approx(loss, rel=1e-4)
    assert ours.accuracy == pytest.approx(accuracy, abs=1e-6)
    assert ours.confusion.sum() == len(data.x_test)
    assert ours.confusion.trace() == round(accuracy * len(data.x_test))


def test_table_and_files(tmp_path):
    labels = np.repeat(np.arange(10), 3)
    probabilities = np.eye(10)[labels] * 0.9 + 0.01
    ev = evaluate.Evaluation(
        0.1,
        1.0,
        evaluate.confusion_matrix(labels, labels),
        *evaluate.per_class(evaluate.confusion_matrix(labels, labels)),
        probabilities=probabilities,
        labels=labels,
    )
    table = evaluate.format_confusion(ev.confusion).splitlines()
    assert len(table) == 11 and len({len(line) for line in table}) == 1  # aligned
    paths = evaluate.save_results(ev, tmp_path)
    assert paths["confusion_matrix_png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    saved = json.loads(paths["confusion_matrix_json"].read_text())
    assert np.array(saved["confusion_matrix"]["counts"]).sum() == 30
    assert saved["per_class"]["3"] == {"precision": 1.0, "recall": 1.0, "f1": 1.0, "support": 3}


# --- class names ------------------------------------------------------------------------------

from tests.conftest import FASHION_NAMES  # noqa: E402


def _named_evaluation(names):
    labels = np.repeat(np.arange(10), 3)
    probabilities = np.eye(10)[labels] * 0.9 + 0.01
    probabilities[0] = np.eye(10)[6] * 0.9 + 0.01  # a T-shirt taken for a shirt
    return evaluate.from_probabilities(probabilities, labels, names)


def test_class_names_in_the_tables_and_json(tmp_path):
    ev = _named_evaluation(FASHION_NAMES)
    report = evaluate.format_report(ev)
    assert "Confusion matrix (rows: true class, columns: predicted class, by number)" in report
    table = evaluate.format_confusion(ev.confusion, FASHION_NAMES).splitlines()
    assert len(table) == 11 and len({len(line) for line in table}) == 1  # aligned
    assert table[1].startswith("0 T-shirt/top") and table[10].startswith("9 Ankle boot")
    assert table[1].split()[-10:] == ["2", "0", "0", "0", "0", "0", "1", "0", "0", "0"]  # one as 6
    per_class = evaluate.format_per_class(ev).splitlines()
    assert per_class[0].startswith("class") and per_class[7].startswith("6 Shirt")
    assert len({len(line) for line in per_class[1:]}) == 1
    saved = json.loads(evaluate.save_results(ev, tmp_path)["confusion_matrix_json"].read_text())
    assert saved["class_names"] == FASHION_NAMES
    assert saved["confusion_matrix"]["rows"] == "true class"
    assert saved["per_class"]["6"]["precision"] == pytest.approx(0.75)


def test_mnist_tables_stay_digits():
    ev = _named_evaluation(None)
    assert ev.class_names == DIGITS
    assert evaluate.format_confusion(ev.confusion).splitlines()[0].startswith("true\\pred   0")
    assert "rows: true digit, columns: predicted)" in evaluate.format_report(ev)
    assert (
        evaluate.format_per_class(ev).splitlines()[0] == "digit  precision  recall      f1  support"
    )
    assert ev.to_dict()["confusion_matrix"]["rows"] == "true digit"


def test_mistakes_are_captioned_with_class_names(monkeypatch):
    drawn = []
    monkeypatch.setattr(evaluate, "digits_png", lambda tiles, empty: drawn.extend(tiles) or b"")
    ev = _named_evaluation(FASHION_NAMES)
    evaluate.mistakes_png(
        np.zeros((30, 28, 28)), ev.labels, ev.probabilities, class_names=FASHION_NAMES
    )
    assert [t.title for t in drawn] == ["#0: predicted Shirt (91%)\ntrue label T-shirt/top"]
