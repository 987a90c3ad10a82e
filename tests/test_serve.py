"""`cnn serve`: the JSON API over a real socket on 127.0.0.1, bad input of every kind, path
traversal, the command as a process, and the page in a real headless Chromium (Selenium)."""

from __future__ import annotations

import base64
import http.client
import io
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from cnn_mnist.analysis import network
from cnn_mnist.analysis.images import load_digit
from cnn_mnist.core.datasets import DIGITS
from cnn_mnist.stages.handle import open_saved
from cnn_mnist.tools import serve
from tests.conftest import sigint_as_in_a_terminal

REPO = Path(__file__).resolve().parent.parent


# --- pictures made in the test (never MNIST digits) -------------------------------------------


def drawn_png(kind: str = "1", size: int = 280, fmt: str = "PNG") -> bytes:
    """A digit drawn with lines: dark ink on white, like the page's pad."""
    image = Image.new("L", (size, size), 255)
    draw = ImageDraw.Draw(image)
    s = size / 280
    if kind == "1":
        draw.line([(150 * s, 50 * s), (140 * s, 230 * s)], fill=0, width=int(20 * s))
    elif kind == "0":
        draw.ellipse([(80 * s, 50 * s), (200 * s, 230 * s)], outline=0, width=int(20 * s))
    else:  # a 7
        draw.line(
            [(80 * s, 60 * s), (200 * s, 60 * s), (120 * s, 230 * s)], fill=0, width=int(20 * s)
        )
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, fmt)
    return buffer.getvalue()


def number_png(kinds: str = "170", size: int = 280) -> bytes:
    """Digits drawn as drawn_png draws them, side by side in one picture (a number)."""
    row = Image.new("L", (size * len(kinds), size), 255)
    for k, kind in enumerate(kinds):
        row.paste(Image.open(io.BytesIO(drawn_png(kind, size))).convert("L"), (k * size, 0))
    buffer = io.BytesIO()
    row.save(buffer, "PNG")
    return buffer.getvalue()


def bilevel_png(width: int, height: int) -> bytes:
    """A huge picture in a few kB: 1 bit per pixel, all white, compresses to almost nothing."""
    buffer = io.BytesIO()
    Image.new("1", (width, height), 1).save(buffer, "PNG")
    return buffer.getvalue()


# --- a server on 127.0.0.1 ------------------------------------------------------------------


def start(app: serve.App):
    server = serve.make_server(app, "127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    return server


def stop(server) -> None:
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def tiny(tiny_trained):
    """The session's tiny model: its path, folder (mnist/, logs/, models/) and run result."""
    model_path, result = tiny_trained
    return model_path, Path(model_path).parent.parent, result


@pytest.fixture(scope="module")
def server(tiny):
    model_path, folder, _ = tiny
    app = serve.App(model_path, data_path=str(folder / "mnist"), log_dir=folder / "logs")
    running = start(app)
    yield running
    stop(running)


def call(
    server, method: str, path: str, body: bytes | None = None, headers: dict | None = None
) -> tuple[int, dict, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", server.server_address[1], timeout=60)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        connection.close()


def call_json(server, method: str, path: str, body=None, headers=None) -> tuple[int, dict]:
    if isinstance(body, (dict, list)):
        body = json.dumps(body).encode()
        headers = {"Content-Type": "application/json", **(headers or {})}
    status, answer_headers, data = call(server, method, path, body, headers)
    assert answer_headers["Content-Type"] == "application/json", (status, data[:200])
    return status, json.loads(data)


def raw(server, request: bytes) -> tuple[int, bytes]:
    """Bytes on a socket exactly as given (no client library tidying the path)."""
    with socket.create_connection(("127.0.0.1", server.server_address[1]), timeout=30) as sock:
        sock.sendall(request)
        chunks = []
        while chunk := sock.recv(1 << 16):
            chunks.append(chunk)
    head, _, body = b"".join(chunks).partition(b"\r\n\r\n")
    return int(head.split()[1]), body


def still_serving(server) -> None:
    status, answer = call_json(server, "GET", "/api/model")
    assert status == 200 and answer["backend"] == "litert"


# --- the page's files -----------------------------------------------------------------------


def test_the_page_and_its_files_come_from_the_package_without_a_cdn(server):
    status, headers, body = call(server, "GET", "/")
    assert status == 200 and headers["Content-Type"] == "text/html; charset=utf-8"
    page = body.decode()
    assert '<canvas id="pad"' in page and 'src="/static/main.js"' in page
    for name, kind in [
        ("main.js", "text/javascript"),
        ("style.css", "text/css"),
        ("icon.svg", "image/svg+xml"),
    ]:
        status, headers, body = call(server, "GET", f"/static/{name}")
        assert status == 200 and headers["Content-Type"].startswith(kind)
        assert body == (REPO / "cnn_mnist" / "tools" / "static" / name).read_bytes()
        external = body.replace(b'xmlns="http://www.w3.org/2000/svg"', b"")  # a name, not a fetch
        assert not re.search(rb"(https?:)?//[a-z0-9.-]+\.[a-z]{2,}/", external), name  # no CDN
    assert not re.search(r"(src|href)=\"(https?:)?//", page)
    assert "default-src 'self'" in headers["Content-Security-Policy"]


STATIC = REPO / "cnn_mnist" / "tools" / "static"
IMPORT = re.compile(r'^import \{[^}]*\} from "\./([\w-]+\.js)";$', re.M)


def test_the_page_loads_as_es_modules_each_served_as_javascript(server):
    page = call(server, "GET", "/")[2].decode()
    scripts = re.findall(r"<script[^>]*>", page)
    assert scripts == ['<script type="module" src="/static/main.js">']
    seen, todo = set(), ["main.js"]
    while todo:  # main.js and every module it imports, and theirs
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        status, headers, body = call(server, "GET", f"/static/{name}")
        assert status == 200 and headers["Content-Type"].startswith("text/javascript"), name
        assert body == (STATIC / name).read_bytes()
        todo += IMPORT.findall(body.decode())
    assert seen == {p.name for p in STATIC.glob("*.js")}  # no module left out, none unused
    assert {"state.js", "api.js", "pad.js", "result.js", "maps.js", "model.js"} <= seen


def test_the_page_state_lives_in_one_module():
    # state.js declares the one state object; the others import it and keep no mutable state
    # of their own at the top level (no module-level let or var).
    for path in sorted(STATIC.glob("*.js")):
        text = path.read_text()
        top = [line for line in text.splitlines() if re.match(r"(export )?(let|var) ", line)]
        assert not top, (path.name, top)
        declares = re.findall(r"^(?:export )?(?:const|let|var) state\b", text, re.M)
        if path.name == "state.js":
            assert declares == ["export const state"]
        else:
            assert not declares, path.name
            if re.search(r"\bstate\.", text):
                assert re.search(
                    r'^import \{[^}]*\bstate\b[^}]*\} from "\./state\.js";$', text, re.M
                ), path.name


def test_the_static_files_are_package_data():
    text = (REPO / "pyproject.toml").read_text()
    assert '"tools/static/*"' in text


# --- the API --------------------------------------------------------------------------------


def test_predict_answers_as_cnn_predict_image_does(server, tiny, tmp_path):
    from cnn_mnist.tools.predict import predict

    picture = tmp_path / "one.png"
    picture.write_bytes(drawn_png("1"))
    status, answer = call_json(
        server, "POST", "/api/predict", picture.read_bytes(), {"Content-Type": "image/png"}
    )
    assert status == 200
    assert set(answer) >= {
        "predicted",
        "class_name",
        "probability",
        "top3",
        "probabilities",
        "input",
    }
    probs = np.array(answer["probabilities"])
    assert probs.shape == (10,) and abs(probs.sum() - 1) < 1e-4
    assert answer["predicted"] == int(probs.argmax()) and answer["class_name"] == str(
        answer["predicted"]
    )
    assert [t["digit"] for t in answer["top3"]] == list(np.argsort(-probs, kind="stable")[:3])
    assert answer["top3"][0] == {
        "digit": answer["predicted"],
        "class_name": answer["class_name"],
        "probability": answer["probability"],
    }
    seen = np.array(answer["input"])
    assert seen.shape == (28, 28) and seen.min() >= 0 and seen.max() == 1
    # The same preprocessing and model as `cnn predict --image`:
    assert np.allclose(seen, load_digit(picture), atol=1e-6)
    expected = predict(images=[str(picture)], model_path=tiny[0]).items[0]
    assert np.allclose(probs, expected.probabilities, atol=1e-5)
    assert answer["predicted"] == expected.predicted


def test_predict_takes_jpeg_too(server):
    status, answer = call_json(server, "POST", "/api/predict", drawn_png("7", fmt="JPEG"))
    assert status == 200 and len(answer["probabilities"]) == 10


def test_number_reads_digits_side_by_side_as_cnn_predict_number_does(server, tiny, tmp_path):
    from cnn_mnist.analysis.number_reading import read_number
    from cnn_mnist.tools.predict import predict_numbers

    picture = tmp_path / "number.png"
    picture.write_bytes(number_png("170"))
    status, answer = call_json(server, "POST", "/api/number", picture.read_bytes())
    assert status == 200, answer
    assert set(answer) == {"model", "number", "digits", "width", "height"}
    assert (answer["width"], answer["height"]) == (840, 280) and answer["model"] == str(tiny[0])
    digits = answer["digits"]
    assert len(digits) == 3
    assert answer["number"] == "".join(d["class_name"] for d in digits)
    for k, d in enumerate(digits):
        assert set(d) == {"predicted", "class_name", "probability", "box", "input"}
        assert d["class_name"] == str(d["predicted"]) and 0 <= d["probability"] <= 1
        left, top, right, bottom = d["box"]
        assert 0 <= left < right <= 840 and 0 <= top < bottom <= 280
        assert 280 * k <= left and right <= 280 * (k + 1)  # each in its third, left to right
        seen = np.array(d["input"])
        assert seen.shape == (28, 28) and seen.min() >= 0 and seen.max() == 1
    # The same reading and model as `cnn predict --image PATH --number`:
    found = read_number(picture)
    assert [d["box"] for d in digits] == [list(f.box) for f in found]
    assert all(np.allclose(d["input"], f.digit, atol=1e-6) for d, f in zip(digits, found))
    expected = predict_numbers([str(picture)], model_path=tiny[0]).items[0]
    assert answer["number"] == expected["number"]
    assert [{k: d[k] for k in ("predicted", "probability", "box")} for d in digits] == [
        {**e, "probability": pytest.approx(e["probability"], abs=1e-5)} for e in expected["digits"]
    ]
    # One digit still predicts as ever after a batch of three on the same interpreter.
    status, one = call_json(server, "POST", "/api/predict", drawn_png("1"))
    assert status == 200 and len(one["probabilities"]) == 10


def test_a_number_in_a_blank_picture_is_422(server):
    buffer = io.BytesIO()
    Image.new("RGB", (560, 280), "white").save(buffer, "PNG")
    status, answer = call_json(server, "POST", "/api/number", buffer.getvalue())
    assert status == 422 and answer["error"].startswith("upload: no digit found"), answer
    still_serving(server)


def test_model_says_what_is_loaded(server, tiny):
    model_path, folder, result = tiny
    status, info = call_json(server, "GET", "/api/model")
    record = json.loads((result.run_dir / "run.json").read_text())
    assert status == 200
    assert info["id"] == str(model_path) and info["run_id"] == result.run_id
    assert info["test_accuracy"] == pytest.approx(result.evaluation.accuracy)
    assert info["params"] == record["metrics"]["params"] == open_saved(model_path).params
    assert info["backend"] == "litert" and info["class_names"] == DIGITS
    assert info["layers"] == ["Conv2D", "MaxPooling2D", "Flatten", "Dense"]


def test_models_lists_each_file_once(server, tiny):
    status, answer = call_json(server, "GET", "/api/models")
    assert status == 200
    # models/tiny.h5 and the run's model.h5 are one file (a hard link): listed once.
    assert [m["id"] for m in answer["models"]] == [str(tiny[0])]
    assert answer["models"][0]["current"] is True


def test_a_test_digit_with_its_label(server, tiny_mnist):
    status, answer = call_json(server, "GET", "/api/test/3")
    assert status == 200 and answer["index"] == 3
    assert answer["label"] == int(tiny_mnist.y_test[3]) and answer["label_name"] == str(
        answer["label"]
    )
    assert answer["correct"] == (answer["predicted"] == answer["label"])
    assert np.allclose(answer["input"], tiny_mnist.x_test[3] / 255.0, atol=1e-6)
    status, answer = call_json(server, "GET", "/api/test/128")
    assert status == 404 and "valid indices are 0 to 127" in answer["error"]


def _folder_with_labels(folder: Path, images: np.ndarray, labels: np.ndarray) -> Path:
    from cnn_mnist.stages.data import IDX_FILES
    from tests.conftest import write_idx

    folder.mkdir(parents=True)
    for role, array in {
        "x_train": images,
        "y_train": labels,
        "x_test": images,
        "y_test": labels,
    }.items():
        write_idx(folder / f"{IDX_FILES[role]}.gz", array)
    return folder


def test_a_random_mistake_and_none_to_show(tiny, tiny_mnist, tmp_path):
    from cnn_mnist.stages.handle import LiteRTModel
    from cnn_mnist.tools.predict import probabilities

    model_path, folder, _ = tiny
    wrong = _folder_with_labels(
        tmp_path / "wrong", tiny_mnist.x_test, (tiny_mnist.y_test + 1) % 10
    )  # every label off by one
    lite = LiteRTModel(Path(model_path).with_suffix(".tflite"))
    own = probabilities(lite, tiny_mnist.x_test / np.float32(255)).argmax(axis=1)
    right = _folder_with_labels(tmp_path / "right", tiny_mnist.x_test, own.astype(np.uint8))
    for data, expected in [(wrong, 200), (right, 404)]:
        running = start(serve.App(model_path, data_path=str(data), log_dir=folder / "logs"))
        try:
            status, answer = call_json(running, "GET", "/api/test/mistake")
        finally:
            stop(running)
        assert status == expected, answer
        if expected == 200:
            assert answer["correct"] is False and answer["label"] != answer["predicted"]
            assert answer["label"] == (tiny_mnist.y_test[answer["index"]] + 1) % 10
        else:
            assert "every test digit right" in answer["error"]


def test_test_digits_are_from_the_dataset_the_model_was_trained_on(
    tiny, tiny_mnist, idx_folder, tmp_path, monkeypatch
):
    # The test's digits stand for Fashion-MNIST (found by checksum), and so does the model's
    # record: the page shows them with its class names, not "this is not MNIST".
    from cnn_mnist.stages import data
    from tests.conftest import FASHION_NAMES, known_table, relabelled_model

    monkeypatch.setattr(data, "KNOWN", {"fashion_mnist": known_table(tiny_mnist)})
    model = relabelled_model(tiny[0], tmp_path / "models" / "fashion.h5")
    running = start(serve.App(model, data_path=str(idx_folder), log_dir=tmp_path / "logs"))
    try:
        status, answer = call_json(running, "GET", "/api/test/5")
        assert status == 200, answer
        assert answer["label"] == tiny_mnist.y_test[5]
        assert answer["label_name"] == FASHION_NAMES[answer["label"]]
        assert answer["class_name"] == FASHION_NAMES[answer["predicted"]]
        status, answer = call_json(running, "GET", "/api/model")
        assert answer["class_names"] == FASHION_NAMES
    finally:
        stop(running)


def test_models_beside_the_served_one_and_in_the_models_folder(tiny, tmp_path):
    # `cnn serve --model logs/fit/<run>/model.h5` offers models/ too, and the other way round.
    model_path, folder, _ = tiny
    beside, models = tmp_path / "run", tmp_path / "models"
    for where, name in [(beside, "served"), (beside, "other"), (models, "kept")]:
        where.mkdir(exist_ok=True)
        for suffix in (".h5", ".tflite"):
            shutil.copy(Path(model_path).with_suffix(suffix), where / f"{name}{suffix}")
    app = serve.App(beside / "served.h5", log_dir=tmp_path / "logs", models_dir=models)
    assert [m["id"] for m in app.models()] == [
        str(beside / "served.h5"),
        str(models / "kept.h5"),
        str(beside / "other.h5"),
    ]


def test_each_model_is_loaded_once(tiny, tmp_path, monkeypatch):
    from cnn_mnist.tools import predict

    model_path, folder, _ = tiny
    models = tmp_path / "models"
    models.mkdir()
    for suffix in (".h5", ".tflite"):
        shutil.copy(Path(model_path).with_suffix(suffix), models / f"copy{suffix}")
    opened = []
    real = predict.open_model
    monkeypatch.setattr(  # where serve.py looks it up
        serve, "open_model", lambda path, *a, **k: opened.append(str(path)) or real(path, *a, **k)
    )
    running = start(serve.App(model_path, log_dir=folder / "logs", models_dir=models))
    try:
        for model in [None, str(models / "copy.h5"), str(model_path), str(models / "copy.h5")]:
            if model is not None:
                assert call_json(running, "POST", "/api/model", {"id": model})[0] == 200
            for _ in range(3):
                assert call_json(running, "POST", "/api/predict", drawn_png("1"))[0] == 200
            call_json(running, "GET", "/api/models")
    finally:
        stop(running)
    assert opened == [str(model_path), str(models / "copy.h5")]


def test_selecting_another_model(tiny, tmp_path):
    model_path, folder, _ = tiny
    models = tmp_path / "models"
    models.mkdir()
    for suffix in (".h5", ".tflite"):  # a copy, not a link: another file to choose
        shutil.copy(Path(model_path).with_suffix(suffix), models / f"copy{suffix}")
    running = start(serve.App(model_path, log_dir=folder / "logs", models_dir=models))
    try:
        status, answer = call_json(running, "GET", "/api/models")
        ids = [m["id"] for m in answer["models"]]
        assert ids == [str(model_path), str(models / "copy.h5")]
        status, info = call_json(running, "POST", "/api/model", {"id": str(models / "copy.h5")})
        assert status == 200 and info["id"] == str(models / "copy.h5")
        assert call_json(running, "GET", "/api/model")[1]["id"] == str(models / "copy.h5")
        for wrong in ["/etc/passwd", "../README.md", 3, None]:
            status, answer = call_json(running, "POST", "/api/model", {"id": wrong})
            assert status == 404 and "GET /api/models" in answer["error"]
        status, answer = call_json(running, "POST", "/api/model", b"not json")
        assert status == 400
        assert call_json(running, "GET", "/api/model")[1]["id"] == str(models / "copy.h5")
    finally:
        stop(running)


def test_feature_maps_are_cnn_inspects(server, tiny):
    status, answer = call_json(server, "POST", "/api/predict", drawn_png("0"))
    digit = np.array(answer["input"], dtype=np.float32)
    status, maps = call_json(server, "POST", "/api/features", {"input": answer["input"]})
    assert status == 200
    assert [(m["index"], m["type"], m["shape"]) for m in maps["layers"]] == [
        (0, "Conv2D", [26, 26, 8]),
        (1, "MaxPooling2D", [13, 13, 8]),
    ]
    model = open_saved(tiny[0]).keras_model()
    outs = network.activations(model, network.model_input(digit))
    for layer in maps["layers"]:
        png = base64.b64decode(layer["png"].split(",", 1)[1])
        shown = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))
        expected = network.to_rgb8(network.tile(outs[layer["index"]][0]), "viridis")
        assert np.abs(shown.astype(int) - expected).max() <= 1
        assert layer["grid"] == {"rows": 3, "columns": 3, "tile": layer["shape"][:2], "border": 1}
        assert layer["arithmetic"] == network.arithmetic(
            model.layers[layer["index"]], (28, 28, 1) if layer["index"] == 0 else (26, 26, 8)
        )


def test_explain_is_cnn_inspect_at(server, tiny):
    status, answer = call_json(server, "POST", "/api/predict", drawn_png("0"))
    digit = np.array(answer["input"], dtype=np.float32)
    model = open_saved(tiny[0]).keras_model()
    for at in ["0:13,13,5", "0:0,25,7", "1:6,6,2"]:
        status, e = call_json(server, "POST", "/api/explain", {"input": answer["input"], "at": at})
        assert status == 200, e
        position = network.parse_at(at)
        expected = network.explain_at(model, digit, *position)
        assert e["text"] == network.format_explanation(expected)
        assert e["at"] == at and e["value"] == pytest.approx(e["actual"], abs=1e-4)
        assert e["input_size"] == ([28, 28] if position[0] == 0 else [26, 26])
        if e["type"] == "Conv2D":
            assert np.allclose(
                e["products"], np.array(e["patch"]) * np.array(e["kernel"]), atol=1e-5
            )
            assert e["total"] == pytest.approx(np.sum(e["products"]) + e["bias"], abs=1e-5)
        else:
            assert e["winner"] is not None and e["value"] == max(
                v for row in e["window"] for v in row if v is not None
            )


def test_many_clients_at_once_get_the_same_answer(server):
    picture = drawn_png("7")
    answers, errors = [], []

    def client():
        for _ in range(5):
            try:
                status, answer = call_json(server, "POST", "/api/predict", picture)
                answers.append((status, answer["probabilities"]))
            except Exception as exc:  # noqa: BLE001 - collected and reported below
                errors.append(repr(exc))

    threads = [threading.Thread(target=client) for _ in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(answers) == 60
    assert all(status == 200 and probs == answers[0][1] for status, probs in answers)


# --- bad input: a JSON error with the right status, and the server goes on --------------------


def _missing_length(server):
    return raw(server, b"POST /api/predict HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")


def _chunked(server):
    return raw(
        server,
        b"POST /api/predict HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
        b"Connection: close\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    )


def _huge_declared(server):  # 1 GB announced, nothing sent: refused without reading
    return raw(
        server, b"POST /api/predict HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000000\r\n\r\n"
    )


def _bad_length(server):
    return raw(
        server,
        b"POST /api/predict HTTP/1.1\r\nHost: x\r\nContent-Length: lots\r\n"
        b"Connection: close\r\n\r\n",
    )


def _length(value: bytes):
    """A POST whose Content-Length header is `value` (its bytes read as Latin-1, as HTTP's
    headers are: b"\xb2" is '²', a digit to str.isdigit() that int() refuses)."""

    def send(server):
        return raw(
            server,
            b"POST /api/predict HTTP/1.1\r\nHost: x\r\nContent-Length: " + value + b"\r\n"
            b"Connection: close\r\n\r\n",
        )

    return send


def _unknown_method(server):
    return raw(server, b"BREW /api/predict HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")


def _garbage(server):
    return raw(server, b"\x16\x03\x01 hello this is not http\r\n\r\n")


def _truncated_png():
    return drawn_png("1")[:300]


BAD_REQUESTS = [
    # name, method, path, body, status, words in the error
    ("over 5 MB", "POST", "/api/predict", b"\0" * (serve.MAX_BODY + 1), 413, "limit is 5 MB"),
    (
        "over 40 megapixels",
        "POST",
        "/api/predict",
        bilevel_png(8000, 6000),
        400,
        "(8000x6000 = 48 megapixels); the limit is 40 megapixels",
    ),
    (
        "a decompression bomb",
        "POST",
        "/api/predict",
        bilevel_png(15000, 15000),
        400,
        "225 megapixels",
    ),
    ("not an image", "POST", "/api/predict", b"hello, world", 415, "not an image"),
    ("a truncated PNG", "POST", "/api/predict", _truncated_png(), 415, "not an image"),
    ("no body", "POST", "/api/predict", b"", 400, "empty body"),
    ("a number without a body", "POST", "/api/number", b"", 400, "empty body"),
    ("a number not an image", "POST", "/api/number", b"hello, world", 415, "not an image"),
    ("GET on number", "GET", "/api/number", None, 405, "takes POST"),
    ("an unknown path", "GET", "/nope", None, 404, "no such page"),
    ("an unknown API path", "GET", "/api/nope", None, 404, "/api/predict, /api/number"),
    ("GET on predict", "GET", "/api/predict", None, 405, "takes POST"),
    ("POST on the page", "POST", "/", b"x", 405, "read with GET"),
    ("DELETE on the model", "DELETE", "/api/model", None, 405, "takes GET or POST"),
    ("PUT on a static file", "PUT", "/static/main.js", b"x", 405, "read with GET"),
    (
        "a negative test index",
        "GET",
        "/api/test/-1",
        None,
        404,
        "no test digit -1: the test set has 128 images, so valid indices are 0 to 127",
    ),
    ("a test index past the end", "GET", "/api/test/99999", None, 404, "0 to 127"),
    ("features without JSON", "POST", "/api/features", b"{not json", 400, "JSON object"),
    (
        "features of a 27x28 input",
        "POST",
        "/api/features",
        json.dumps({"input": [[0.0] * 28] * 27}).encode(),
        400,
        "28 rows of 28 numbers",
    ),
    (
        "features of values over 1",
        "POST",
        "/api/features",
        json.dumps({"input": [[2.0] * 28] * 28}).encode(),
        400,
        "from 0 to 1",
    ),
    (
        "features of NaN",
        "POST",
        "/api/features",
        b'{"input": ' + b"[" + b",".join([b"[" + b",".join([b"NaN"] * 28) + b"]"] * 28) + b"]}",
        400,
        "from 0 to 1",
    ),
    (
        "features of text",
        "POST",
        "/api/features",
        json.dumps({"input": "seven"}).encode(),
        400,
        "28 rows",
    ),
    (
        "explain a bad position",
        "POST",
        "/api/explain",
        json.dumps({"input": [[0.0] * 28] * 28, "at": "0:13,13"}).encode(),
        400,
        "expected LAYER:ROW,COL,CHANNEL",
    ),
    (
        "explain a layer that is not conv",
        "POST",
        "/api/explain",
        json.dumps({"input": [[0.0] * 28] * 28, "at": "3:0,0,0"}).encode(),
        400,
        "not a convolution or pooling layer",
    ),
    (
        "explain out of range",
        "POST",
        "/api/explain",
        json.dumps({"input": [[0.0] * 28] * 28, "at": "0:26,0,0"}).encode(),
        400,
        "ROW is 0 to 25",
    ),
    (
        "explain without at",
        "POST",
        "/api/explain",
        json.dumps({"input": [[0.0] * 28] * 28}).encode(),
        400,
        '"at" must be a string',
    ),
]


@pytest.mark.parametrize(
    "name, method, path, body, status, words", BAD_REQUESTS, ids=[r[0] for r in BAD_REQUESTS]
)
def test_bad_requests_get_a_json_error_and_the_server_goes_on(
    server, name, method, path, body, status, words
):
    got, answer = call_json(server, method, path, body)
    assert (got, answer["status"]) == (status, status), answer
    assert words in answer["error"]
    still_serving(server)


def test_a_blank_picture_is_422(server):
    buffer = io.BytesIO()
    Image.new("RGB", (280, 280), "white").save(buffer, "PNG")
    status, answer = call_json(server, "POST", "/api/predict", buffer.getvalue())
    assert status == 422 and "no digit found" in answer["error"]
    still_serving(server)


def test_an_internal_error_is_a_500_in_json_and_the_server_goes_on(server, monkeypatch):
    import logging

    def broken():
        raise RuntimeError("the disk fell off")

    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append  # the CLI's logger does not propagate: listen on serve's own
    serve.log.addHandler(handler)
    monkeypatch.setattr(server.app, "model", broken)
    try:
        status, answer = call_json(server, "GET", "/api/model")
    finally:
        serve.log.removeHandler(handler)
    assert status == 500 and "RuntimeError: the disk fell off" in answer["error"]
    # Logged with its traceback, for whoever runs the server.
    assert [r.getMessage() for r in records] == ["GET /api/model failed"] and records[0].exc_info
    monkeypatch.undo()
    still_serving(server)


def test_no_test_set_is_a_503_that_says_how_to_give_one(tiny, tmp_path):
    model_path, folder, _ = tiny
    running = start(serve.App(model_path, data_path=str(tmp_path / "none"), log_dir=folder))
    try:
        status, answer = call_json(running, "GET", "/api/test/0")
        assert status == 503 and answer["error"].startswith("no test digits to show: ")
        assert "internal error" not in answer["error"]
        still_serving(running)
    finally:
        stop(running)


def test_wrong_method_says_which_are_allowed(server):
    status, headers, _ = call(server, "GET", "/api/predict")
    assert status == 405 and headers["Allow"] == "POST"


@pytest.mark.parametrize(
    "send, status, words",
    [
        (_missing_length, 411, "Content-Length"),
        (_chunked, 411, "Content-Length"),
        (_huge_declared, 413, "1,000,000,000 bytes"),
        (_bad_length, 400, "not a number"),
        # Before: '²' and 5,000 digits passed str.isdigit() and int() raised: a 500.
        (_length(b"\xb2"), 400, "Content-Length '\xb2' is not a number of bytes"),
        (_length(b"1\xb3"), 400, "not a number of bytes"),
        (_length(b"9" * 5000), 413, "the body is a 5000-digit number of bytes"),
        (_length(b"x" * 20000), 400, "Content-Length 'xxxxxxxxx"),
        (_unknown_method, 501, "'BREW' not supported"),
        (_garbage, 400, "Bad request"),
    ],
    ids=[
        "no Content-Length",
        "chunked",
        "1 GB announced",
        "a bad Content-Length",
        "a superscript two",
        "one and a superscript three",
        "5,000 digits",
        "20,000 letters",
        "an unknown method",
        "not HTTP",
    ],
)
def test_malformed_requests_get_a_json_error_and_the_server_goes_on(server, send, status, words):
    got, body = send(server)
    assert got == status
    answer = json.loads(body)
    assert answer["status"] == status and words.lower() in answer["error"].lower(), answer
    assert len(answer["error"]) < 300  # a header's value is not echoed whole
    still_serving(server)


TRAVERSALS = [
    "/../README.md",
    "/static/../serve.py",
    "/static/../../README.md",
    "/static/..%2fserve.py",
    "/static/%2e%2e/serve.py",
    "/static/%2e%2e%2fserve.py",
    "/static/%2E%2E/%2E%2E/README.md",
    "/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
    "/static/%252e%252e/serve.py",
    "/static/..%5cserve.py",
    "/static/..\\serve.py",
    "/static/....//serve.py",
    "/static//etc/passwd",
    "//etc/passwd",
    "/etc/passwd",
    "/static/main.js/../../serve.py",
    "/static/main.js%00.png",
    "/static/%c0%ae%c0%ae/serve.py",
    "/static/./main.js",
    "/static",
    "/static/",
    "/cnn_mnist/tools/serve.py",
    "/index.html",
    "http://127.0.0.1/../cnn_mnist/tools/serve.py",
]


@pytest.mark.parametrize("path", TRAVERSALS)
def test_no_path_reaches_files_outside_the_page(server, path):
    status, body = raw(
        server, f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode()
    )
    assert status == 404, body[:200]
    answer = json.loads(body)
    assert (
        answer["status"] == 404 and "root:" not in body.decode() and "import" not in body.decode()
    )
    still_serving(server)


# --- the command --------------------------------------------------------------------------------


def test_is_loopback():
    assert serve.is_loopback("127.0.0.1") and serve.is_loopback("localhost")
    assert serve.is_loopback("::1") and serve.is_loopback("127.0.0.5")
    assert not serve.is_loopback("0.0.0.0") and not serve.is_loopback("no-such-host.invalid")


def _serve_process(model_path, *args):
    env = dict(os.environ, PYTHONPATH=str(REPO))
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "cnn_mnist",
            "serve",
            "--model",
            str(model_path),
            "--port",
            "0",
            *args,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        preexec_fn=sigint_as_in_a_terminal,
    )
    line = process.stdout.readline()
    found = re.search(r"at (http://[^ ]+/) ", line)
    assert found, (line, process.stderr.read() if process.poll() is not None else "")
    return process, found.group(1)


@pytest.mark.parametrize("host, warned", [("127.0.0.1", False), ("0.0.0.0", True)])
def test_the_command_serves_warns_off_loopback_and_stops_on_ctrl_c(tiny, host, warned):
    import urllib.request

    model_path, folder, _ = tiny
    process, url = _serve_process(model_path, "--host", host, "--data", str(folder / "mnist"))
    try:
        port = url.rsplit(":", 1)[1].strip("/")
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/model", timeout=30) as r:
            info = json.load(r)
        # The page's predictions ran on LiteRT: TensorFlow was never imported.
        with urllib.request.urlopen(
            urllib.request.Request(f"http://127.0.0.1:{port}/api/predict", data=drawn_png("1")),
            timeout=30,
        ) as r:
            assert json.load(r)["probabilities"]
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/test/0", timeout=30) as r:
            assert json.load(r)["index"] == 0
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/models", timeout=30) as r:
            assert json.load(r)["models"]  # the page asks for it on every load
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/model", timeout=30) as r:
            assert json.load(r)["tensorflow_imported"] is False
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=30)
    finally:
        process.kill()
    assert info["backend"] == "litert" and info["tensorflow_imported"] is False
    assert process.returncode == 0, err
    assert "Stopped." in out and "Traceback" not in err
    lines = [line for line in err.splitlines() if line.strip()]
    if warned:
        assert len(lines) == 1 and lines[0].startswith("warning: listening on 0.0.0.0")
        assert "no authentication" in lines[0]
    else:
        assert lines == []


def test_the_command_reports_a_missing_model_and_a_busy_port(tiny, tmp_path):
    from click.testing import CliRunner

    from cnn_mnist.cli import cli

    result = CliRunner().invoke(cli, ["serve", "--model", str(tmp_path / "none.h5")])
    assert result.exit_code == 1 and result.output.startswith("error: model file not found")
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = CliRunner().invoke(cli, ["serve", "--model", str(tiny[0]), "--port", str(port)])
    assert result.exit_code == 1, result.output
    assert (
        f"error: cannot listen on 127.0.0.1:{port}" in result.output and "--port" in result.output
    )
    assert "Traceback" not in result.output


@pytest.mark.parametrize(
    "kind, expected",
    [
        ("wrong_input", "the model takes inputs of shape (32, 32, 3), expected (28, 28, 1)"),
        ("five_outputs", "the model has outputs of shape (5,), expected (10,)"),
        ("linear", "the model's outputs are not probabilities (they sum to "),
    ],
)
@pytest.mark.parametrize("fmt", ["onnx", "litert", "keras"])
def test_a_foreign_model_is_refused_at_start_up(foreign_models, tmp_path, kind, expected, fmt):
    """Before the server listens: not a runtime's traceback, nor a 5-output model served."""
    from click.testing import CliRunner

    from cnn_mnist.cli import cli
    from cnn_mnist.core.errors import ModelFileError

    model = foreign_models[kind][fmt]
    with pytest.raises(ModelFileError) as caught:
        serve.App(model, log_dir=tmp_path / "logs")
    assert str(caught.value).startswith(f"{model}: {expected}")
    result = CliRunner().invoke(cli, ["serve", "--model", str(model), "--port", "0"])
    assert result.exit_code == 1 and result.output == f"error: {caught.value}\n"


def test_serve_help_does_not_import_tensorflow():
    code = (
        "import sys; from cnn_mnist.cli import main; sys.argv = ['cnn', 'serve', '--help']\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env=dict(os.environ, PYTHONPATH=str(REPO)),
    )
    assert result.returncode == 0, result.stderr
    assert "--host" in result.stdout and "--open" in result.stdout


# --- the page in a real browser ---------------------------------------------------------------


def _unavailable(message: str):
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"browser test cannot run: {message}")
    pytest.skip(f"browser test cannot run: {message}")


@pytest.fixture(scope="module")
def browser():
    """Headless Debian Chromium through Selenium; a skip with the reason (a failure under CI)."""
    try:
        from selenium import webdriver
        from selenium.common.exceptions import WebDriverException
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        _unavailable("selenium is not installed (pip install -e '.[test]')")
    chromium = shutil.which("chromium") or "/usr/bin/chromium"
    driver_path = shutil.which("chromedriver") or "/usr/bin/chromedriver"
    if not (os.path.exists(chromium) and os.path.exists(driver_path)):
        _unavailable("no chromium or chromedriver (apt-get install chromium chromium-driver)")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--window-size=1280,1000",
    ):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})  # the console, for its errors
    try:
        driver = webdriver.Chrome(service=Service(driver_path), options=options)
    except WebDriverException as exc:
        _unavailable(f"chromium did not start ({exc.msg})")
    yield driver
    driver.quit()


def _open(browser, server, size=(1280, 1000)):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    browser.set_window_size(*size)
    browser.get(f"http://127.0.0.1:{server.server_address[1]}/")
    WebDriverWait(browser, 30).until(lambda b: b.find_element(By.ID, "model-info").text)
    return browser.find_element(By.ID, "pad")


def _stroke(browser, pad, points, kind="mouse"):
    """One stroke through `points` (fractions of the pad) with a mouse, finger or pen."""
    from selenium.webdriver.common.actions import interaction
    from selenium.webdriver.common.actions.action_builder import ActionBuilder
    from selenium.webdriver.common.actions.pointer_input import PointerInput

    kinds = {
        "mouse": interaction.POINTER_MOUSE,
        "touch": interaction.POINTER_TOUCH,
        "pen": interaction.POINTER_PEN,
    }
    actions = ActionBuilder(browser, mouse=PointerInput(kinds[kind], kind), duration=30)
    width, height = pad.rect["width"], pad.rect["height"]
    at = [(int((x - 0.5) * width), int((y - 0.5) * height)) for x, y in points]
    actions.pointer_action.move_to(pad, *at[0]).pointer_down()
    for x, y in at[1:]:
        actions.pointer_action.move_to(pad, x, y)
    actions.pointer_action.pointer_up()
    actions.perform()


def _shown(browser, previous: str | None = None) -> dict:
    """What the page shows once its prediction settles: the big digit and the ten bars."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(browser, 30).until(
        lambda b: (
            b.find_element(By.ID, "predicted").text not in ("", "?")
            and b.execute_script("return !state.inFlight")
            and b.execute_script(
                "return state.answer && JSON.stringify(state.answer.probabilities)"
            )
            != previous
        )
    )
    time.sleep(0.3)  # the debounce: a last request may follow the stroke's end
    WebDriverWait(browser, 30).until(lambda b: b.execute_script("return !state.inFlight"))
    bars = browser.find_elements(By.CSS_SELECTOR, "#bars li")
    return {
        "predicted": browser.find_element(By.ID, "predicted").text,
        "bars": [float(b.get_attribute("data-probability")) for b in bars],
        "widths": [b.find_element(By.CSS_SELECTOR, ".fill").get_attribute("style") for b in bars],
        "top": [b.get_attribute("class") for b in bars],
        "answer": browser.execute_script("return JSON.stringify(state.answer.probabilities)"),
    }


def _pad_png(browser) -> bytes:
    url = browser.execute_script("return document.getElementById('pad').toDataURL('image/png')")
    return base64.b64decode(url.split(",", 1)[1])


def _check_against_api(server, shown: dict, picture: bytes) -> None:
    status, answer = call_json(server, "POST", "/api/predict", picture)
    assert status == 200
    assert shown["predicted"] == answer["class_name"]
    assert np.allclose(shown["bars"], answer["probabilities"], atol=1e-6)
    assert len(shown["bars"]) == 10 and abs(sum(shown["bars"]) - 1) < 1e-3
    assert shown["top"][answer["predicted"]] == "top" and shown["top"].count("top") == 1
    top_width = float(re.search(r"width: ([\d.]+)%", shown["widths"][answer["predicted"]]).group(1))
    assert top_width == pytest.approx(answer["probability"] * 100, abs=0.01)


def test_draw_a_one_and_a_zero(browser, server, tmp_path):
    from selenium.webdriver.common.by import By

    pad = _open(browser, server)
    _stroke(browser, pad, [(0.52, 0.18), (0.51, 0.4), (0.5, 0.6), (0.49, 0.82)])
    one = _shown(browser)
    _check_against_api(server, one, _pad_png(browser))
    browser.save_screenshot(str(tmp_path / "one.png"))

    browser.find_element(By.ID, "clear").click()
    assert browser.find_element(By.ID, "predicted").text == "?"
    # A "0" with a finger, at a phone's width: the page must not scroll while drawing.
    pad = _open(browser, server, (390, 844))
    browser.execute_script("window.scrollTo(0, 60)")
    scrolled = browser.execute_script("return window.scrollY")
    ring = [(0.5 + 0.22 * np.sin(t), 0.5 - 0.32 * np.cos(t)) for t in np.linspace(0, 2 * np.pi, 25)]
    pad = browser.find_element(By.ID, "pad")
    _stroke(browser, pad, ring, kind="touch")
    zero = _shown(browser)
    assert browser.execute_script("return window.scrollY") == scrolled
    _check_against_api(server, zero, _pad_png(browser))
    browser.save_screenshot(str(tmp_path / "zero.png"))
    for name in ("one.png", "zero.png"):
        assert Image.open(tmp_path / name).size[0] > 300


def test_the_modules_load_and_share_one_state_without_console_errors(browser, server):
    browser.get_log("browser")  # what earlier pages logged
    pad = _open(browser, server)
    assert browser.execute_script(
        "return import('/static/state.js').then((m) => m.state === window.state)"
    )
    _stroke(browser, pad, [(0.52, 0.18), (0.51, 0.4), (0.5, 0.6), (0.49, 0.82)])
    shown = _shown(browser)
    _check_against_api(server, shown, _pad_png(browser))
    errors = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert not errors, errors


def _number_shown(browser, count: int) -> dict:
    """The /api/number answer the page shows once it has `count` digits and is settled."""
    from selenium.webdriver.support.ui import WebDriverWait

    settled = "return !state.inFlight && state.number && state.number.digits.length"
    WebDriverWait(browser, 30).until(lambda b: b.execute_script(settled) == count)
    time.sleep(0.3)  # the debounce: a last request may follow the stroke's end
    WebDriverWait(browser, 30).until(lambda b: b.execute_script(settled) == count)
    return browser.execute_script("return state.number")


def test_read_a_number_shows_it_with_each_digits_box_on_the_pad(browser, server, tmp_path):
    from selenium.webdriver.common.by import By

    browser.get_log("browser")  # what earlier pages logged
    pad = _open(browser, server)
    narrow = pad.rect["width"]
    browser.find_element(By.ID, "number-mode").click()
    size = "return [document.getElementById('pad').width, document.getElementById('pad').height]"
    assert browser.execute_script(size) == [560, 280]
    assert pad.rect["width"] > narrow and pad.rect["width"] == pytest.approx(
        2 * pad.rect["height"], abs=2
    )
    assert not browser.find_element(By.ID, "test-show").is_enabled()  # test digits are one each
    _stroke(browser, pad, [(0.25, 0.2), (0.25, 0.5), (0.24, 0.8)])  # a 1 on the left
    _stroke(browser, pad, [(0.6, 0.22), (0.8, 0.22), (0.66, 0.8)])  # a 7 on the right
    shown = _number_shown(browser, 2)
    status, answer = call_json(server, "POST", "/api/number", _pad_png(browser))
    assert status == 200 and answer["number"] == shown["number"]
    assert [d["box"] for d in answer["digits"]] == [d["box"] for d in shown["digits"]]
    assert browser.find_element(By.ID, "predicted").text == shown["number"]
    assert len(shown["number"]) == 2 and (shown["width"], shown["height"]) == (560, 280)
    items = browser.find_elements(By.CSS_SELECTOR, "#digits li")
    assert [i.find_element(By.TAG_NAME, "b").text for i in items] == list(shown["number"])
    # Two boxes over the pad, left to right, each around its stroke.
    boxes = browser.find_elements(By.CSS_SELECTOR, "#boxes .box")
    assert len(boxes) == 2 and all(b.is_displayed() for b in boxes)
    area = pad.rect
    for box, (low, high) in zip(boxes, [(0.15, 0.35), (0.5, 0.9)]):
        r = box.rect
        middle = (r["x"] + r["width"] / 2 - area["x"]) / area["width"]
        assert low < middle < high, (middle, low, high)
        assert area["y"] <= r["y"] and r["y"] + r["height"] <= area["y"] + area["height"]
    assert boxes[0].rect["x"] + boxes[0].rect["width"] < boxes[1].rect["x"]
    assert [b.text for b in boxes] == list(shown["number"])
    browser.save_screenshot(str(tmp_path / "number.png"))

    # An uploaded picture of another shape: shown fitted and centred, the boxes with it.
    picture = tmp_path / "wide.png"
    picture.write_bytes(number_png("170"))  # 840x280 on a 560x280 pad: 2/3, 47 pixels down
    browser.find_element(By.ID, "upload").send_keys(str(picture))
    shown = _number_shown(browser, 3)
    assert shown == call_json(server, "POST", "/api/number", picture.read_bytes())[1]
    boxes = browser.find_elements(By.CSS_SELECTOR, "#boxes .box")
    inner = browser.find_element(By.ID, "boxes").rect  # the pad inside its border
    scale = 560 / 840 * inner["width"] / 560
    for box, d in zip(boxes, shown["digits"]):
        left, top, right, bottom = d["box"]
        expected = [left * scale, (280 - 280 * 2 / 3) / 2 * inner["height"] / 280 + top * scale]
        got = [box.rect["x"] - inner["x"], box.rect["y"] - inner["y"]]
        assert got == pytest.approx(expected, abs=1.5)
        assert box.rect["width"] == pytest.approx((right - left) * scale, abs=1.5)
    assert len(boxes) == 3
    errors = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert not errors, errors

    # Off again: a square pad, the picture read as one digit, and drawing as before.
    browser.find_element(By.ID, "number-mode").click()
    assert browser.execute_script(size) == [280, 280]
    assert not browser.find_elements(By.CSS_SELECTOR, "#boxes .box")
    _check_against_api(server, _shown(browser), picture.read_bytes())
    browser.find_element(By.ID, "clear").click()
    assert browser.find_element(By.ID, "predicted").text == "?"
    _stroke(browser, pad, [(0.52, 0.18), (0.51, 0.4), (0.5, 0.6), (0.49, 0.82)])
    _check_against_api(server, _shown(browser), _pad_png(browser))


def test_upload_a_picture(browser, server, tmp_path):
    from selenium.webdriver.common.by import By

    picture = tmp_path / "seven.png"
    picture.write_bytes(drawn_png("7", size=500))
    _open(browser, server)
    browser.find_element(By.ID, "upload").send_keys(str(picture))
    shown = _shown(browser)
    assert "seven.png" in browser.find_element(By.ID, "source").text
    _check_against_api(server, shown, picture.read_bytes())  # the file itself, not the pad
    browser.save_screenshot(str(tmp_path / "upload.png"))
    assert Image.open(tmp_path / "upload.png").size[0] > 300

    # The same picture dropped on the pad.
    dropped = drawn_png("0", size=400)
    previous = shown["answer"]
    browser.execute_script(
        """
        const bytes = Uint8Array.from(atob(arguments[0]), (c) => c.charCodeAt(0));
        const transfer = new DataTransfer();
        transfer.items.add(new File([bytes], "dropped.png", {type: "image/png"}));
        document.getElementById("pad").dispatchEvent(new DragEvent("drop",
            {dataTransfer: transfer, bubbles: true, cancelable: true}));""",
        base64.b64encode(dropped).decode(),
    )
    shown = _shown(browser, previous)
    assert "dropped.png" in browser.find_element(By.ID, "source").text
    _check_against_api(server, shown, dropped)


def test_the_downloads_are_the_input_the_model_saw(browser, server, tmp_path):
    from cnn_mnist.analysis.images import save_digit_png

    pad = _open(browser, server)
    _stroke(browser, pad, [(0.35, 0.3), (0.65, 0.3), (0.4, 0.75)])
    _shown(browser)
    digit = np.array(browser.execute_script("return state.answer.input"))
    # The PNG button saves the 28x28 canvas: the same pixels as --save-preprocessed writes.
    url = browser.execute_script("return document.getElementById('seen').toDataURL('image/png')")
    page_png = np.asarray(
        Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))).convert("L")
    )
    expected = np.asarray(Image.open(save_digit_png(digit, tmp_path / "seen.png")))
    assert page_png.shape == (28, 28) and np.array_equal(page_png, expected)
    (tmp_path / "values.csv").write_text(
        browser.execute_script("return valuesCSV(state.answer.input)")
    )
    assert np.allclose(np.loadtxt(tmp_path / "values.csv", delimiter=","), digit, atol=1e-6)
    assert browser.find_element("id", "download-png").is_enabled()


def test_reading_a_number_shows_the_chosen_digits_input_and_feature_maps(browser, server):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get_log("browser")  # what earlier pages logged
    pad = _open(browser, server)
    browser.find_element(By.ID, "number-mode").click()
    _stroke(browser, pad, [(0.25, 0.2), (0.25, 0.5), (0.24, 0.8)])  # a 1 on the left
    _stroke(browser, pad, [(0.6, 0.22), (0.8, 0.22), (0.66, 0.8)])  # a 7 on the right
    shown = _number_shown(browser, 2)
    buttons = browser.find_elements(By.CSS_SELECTOR, "#digits li button")
    first_map = (
        "return document.querySelector('.map img') && document.querySelector('.map img').src"
    )
    for k in (0, 1):  # the first is chosen at first; a click chooses the second
        if k:
            buttons[k].click()
        pressed = [b.get_attribute("aria-pressed") for b in buttons]
        assert pressed == ["true" if n == k else "false" for n in range(2)]
        digit = shown["digits"][k]["input"]
        status, maps = call_json(server, "POST", "/api/features", {"input": digit})
        assert status == 200
        WebDriverWait(browser, 60).until(
            lambda b, png=maps["layers"][0]["png"]: b.execute_script(first_map) == png
        )
        assert len(browser.find_elements(By.CSS_SELECTOR, ".map img")) == len(maps["layers"])
        seen = browser.execute_script(
            "const d = document.getElementById('seen').getContext('2d').getImageData(0, 0, 28, 28)"
            ".data; return Array.from({length: 784}, (_, i) => d[4 * i]);"
        )
        expected = [round(min(1, max(0, v)) * 255) for row in digit for v in row]
        assert seen == expected  # "what the model sees": this digit's 28x28 input
    assert browser.find_element(By.ID, "network-card").is_displayed()
    assert "digit chosen above" in browser.find_element(By.ID, "maps-note").text
    errors = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert not errors, errors


def test_click_a_feature_map_value_shows_its_arithmetic(browser, server, tmp_path):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    pad = _open(browser, server)
    _stroke(browser, pad, [(0.3, 0.3), (0.7, 0.3), (0.45, 0.8)], kind="pen")
    _shown(browser)
    WebDriverWait(browser, 60).until(
        lambda b: len(b.find_elements(By.CSS_SELECTOR, ".map img")) == 2
    )
    image = browser.find_elements(By.CSS_SELECTOR, ".map img")[0]
    WebDriverWait(browser, 10).until(lambda b: image.size["width"] > 82)
    browser.execute_script("arguments[0].scrollIntoView({block: 'center'})", image)
    # Channel 5, row 13, column 20 of layer 0: where inspect.tile put it, in screen pixels.
    top, left = network.tile_origin(5, (26, 26), 8)
    scale = image.size["width"] / 82  # the tiled picture is 1 + 3 * (26 + 1) pixels wide
    x, y = (left + 20 + 0.5) * scale, (top + 13 + 0.5) * scale
    ActionChains(browser).move_to_element_with_offset(
        image, int(x - image.size["width"] / 2), int(y - image.size["height"] / 2)
    ).click().perform()
    WebDriverWait(browser, 30).until(lambda b: b.find_elements(By.CSS_SELECTOR, "#explain pre"))
    heading = browser.find_element(By.CSS_SELECTOR, "#explain h3").text
    assert heading == "Layer 0 (Conv2D), row 13, column 20, channel 5"
    text = browser.execute_script("return document.querySelector('#explain pre').textContent")
    digit = browser.execute_script("return state.answer.input")
    status, e = call_json(server, "POST", "/api/explain", {"input": digit, "at": "0:13,20,5"})
    assert text == e["text"] and "(agrees)" in text
    browser.save_screenshot(str(tmp_path / "explain.png"))


def test_a_test_digit_with_its_true_label(browser, server, tiny_mnist):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    _open(browser, server)
    box = browser.find_element(By.ID, "test-index")
    box.clear()
    box.send_keys("5")
    browser.find_element(By.ID, "test-show").click()
    WebDriverWait(browser, 30).until(lambda b: b.find_element(By.ID, "truth").text)
    label = int(tiny_mnist.y_test[5])
    assert browser.find_element(By.ID, "truth").text.startswith(f"True label {label}")
    assert "Test digit 5" in browser.find_element(By.ID, "source").text


def test_choose_a_model_and_see_a_mistake_on_the_page(browser, tiny, tiny_mnist, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.select import Select
    from selenium.webdriver.support.ui import WebDriverWait

    model_path, folder, _ = tiny
    models = tmp_path / "models"
    models.mkdir()
    for suffix in (".h5", ".tflite"):
        shutil.copy(Path(model_path).with_suffix(suffix), models / f"copy{suffix}")
    wrong = _folder_with_labels(tmp_path / "wrong", tiny_mnist.x_test, (tiny_mnist.y_test + 1) % 10)
    running = start(
        serve.App(model_path, data_path=str(wrong), log_dir=folder / "logs", models_dir=models)
    )
    try:
        _open(browser, running)
        choice = Select(browser.find_element(By.ID, "model-select"))
        assert [o.get_attribute("value") for o in choice.options] == [
            str(model_path),
            str(models / "copy.h5"),
        ]
        choice.select_by_value(str(models / "copy.h5"))
        WebDriverWait(browser, 30).until(
            lambda b: call_json(running, "GET", "/api/model")[1]["id"] == str(models / "copy.h5")
        )
        browser.find_element(By.ID, "test-mistake").click()
        WebDriverWait(browser, 30).until(lambda b: b.find_element(By.ID, "truth").text)
        truth = browser.find_element(By.ID, "truth")
        assert truth.text.endswith(": wrong") and truth.get_attribute("class") == "wrong"
        index = int(browser.find_element(By.ID, "test-index").get_attribute("value"))
        label = (int(tiny_mnist.y_test[index]) + 1) % 10
        assert truth.text.startswith(f"True label {label}")
        browser.save_screenshot(str(tmp_path / "mistake.png"))
    finally:
        stop(running)


def test_a_fashion_model_shows_its_class_names_on_the_page(browser, tiny, tmp_path):
    # The bars were made once with the digits 0-9 and kept when the names changed.
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.select import Select
    from selenium.webdriver.support.ui import WebDriverWait

    from tests.conftest import FASHION_NAMES, relabelled_model

    model_path, folder, _ = tiny
    models = tmp_path / "models"
    fashion = relabelled_model(model_path, models / "fashion.h5")
    for suffix in (".h5", ".tflite"):
        shutil.copy(Path(model_path).with_suffix(suffix), models / f"digits{suffix}")
    names = "return [...document.querySelectorAll('#bars .name')].map((n) => n.textContent)"
    running = start(serve.App(fashion, log_dir=folder / "logs", models_dir=models))
    try:
        _open(browser, running)
        WebDriverWait(browser, 30).until(lambda b: b.execute_script(names) == FASHION_NAMES)
        picture = tmp_path / "seven.png"
        picture.write_bytes(drawn_png("7"))
        browser.find_element(By.ID, "upload").send_keys(str(picture))
        shown = _shown(browser)
        _check_against_api(running, shown, picture.read_bytes())
        assert (
            shown["predicted"] in FASHION_NAMES and browser.execute_script(names) == FASHION_NAMES
        )
        assert browser.find_element(By.ID, "confidence").text.split("; then ")[1].split(" ")[0] in {
            name.split(" ")[0] for name in FASHION_NAMES
        }
        browser.save_screenshot(str(tmp_path / "fashion.png"))
        browser.set_window_size(390, 844)  # a phone: long names fit, the verdict does not overlap
        assert browser.execute_script(
            "return [...document.querySelectorAll('#bars .name')].every("
            "(n) => n.scrollWidth <= n.clientWidth + 1)"
        )
        assert browser.execute_script("""
            const a = document.getElementById('predicted').getBoundingClientRect();
            const b = document.getElementById('confidence').getBoundingClientRect();
            return a.right <= b.left || b.right <= a.left || a.bottom <= b.top || b.bottom <= a.top""")
        browser.save_screenshot(str(tmp_path / "fashion-phone.png"))
        Select(browser.find_element(By.ID, "model-select")).select_by_value(
            str(models / "digits.h5")
        )
        WebDriverWait(browser, 30).until(lambda b: b.execute_script(names) == DIGITS)
    finally:
        stop(running)
