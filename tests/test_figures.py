"""Pictures of digits (cnn_mnist/analysis/figures.py) and the worst-mistakes grid built on them."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from cnn_mnist.analysis import figures
from cnn_mnist.stages import evaluate
from cnn_mnist.tools import predict


def _size(png: bytes) -> tuple[int, int]:
    assert png[:4] == b"\x89PNG"
    return Image.open(io.BytesIO(png)).size


def test_a_grid_has_up_to_eight_columns():
    digit = np.zeros((28, 28))
    one = _size(figures.digits_png([figures.Tile(digit, "a")]))
    eight = _size(figures.digits_png([figures.Tile(digit, str(n)) for n in range(8)]))
    nine = _size(figures.digits_png([figures.Tile(digit, str(n)) for n in range(9)]))
    assert eight[0] > 4 * one[0]  # side by side
    assert nine[1] > 1.5 * eight[1] and abs(nine[0] - eight[0]) < one[0]  # a second row


def test_prediction_tiles_say_what_was_predicted_and_the_truth():
    probs = np.full(10, 0.01)
    probs[7] = 0.91
    right = predict.tile(predict.Prediction(np.zeros((28, 28)), probs, index=4, label=7))
    wrong = predict.tile(predict.Prediction(np.zeros((28, 28)), probs, index=5, label=1))
    assert right.title == "#4: predicted 7 (91%)\ntrue label 7" and not right.wrong
    assert wrong.title.endswith("true label 1") and wrong.wrong
    picture = predict.tile(predict.Prediction(np.zeros((28, 28)), probs, image="x/seven.png"))
    assert picture.title == "seven.png\npredicted 7 (91%)" and not picture.wrong


def test_worst_mistakes_come_most_confident_first():
    labels = np.array([3, 3, 1, 2, 0])
    probs = np.full((5, 10), 0.01)
    probs[[0, 1, 2, 3, 4], [3, 5, 1, 8, 9]] = [0.9, 0.6, 0.9, 0.95, 0.7]  # 1, 3, 4 are wrong
    assert evaluate.worst_mistakes(labels, probs).tolist() == [3, 4, 1]
    assert evaluate.worst_mistakes(labels, probs, count=1).tolist() == [3]
    grid = _size(evaluate.mistakes_png(np.zeros((5, 28, 28)), labels, probs))
    none = _size(evaluate.mistakes_png(np.zeros((1, 28, 28)), labels[:1], probs[:1]))
    assert grid[1] > 1.5 * none[1]  # three captioned digits, against one line of text
