"""`cnn serve`: a web page to draw a digit and watch the model read it, and its JSON API.

The page (cnn_mnist/tools/static/, no CDN) sends what is drawn or dropped as PNG or JPEG bytes; the
server makes them MNIST-like with `images.load_digit` (the one preprocessing, as `cnn predict
--image`) and predicts with the model's LiteRT export (no TensorFlow on this path). Feature
maps and the arithmetic of one value come from `network.py`, on the Keras model, which is loaded
(with TensorFlow) the first time they are asked for. Every model is loaded once and kept.

The server is the standard library's ThreadingHTTPServer. Static files are read into memory at
start-up and served from a fixed table, so no request path ever reaches the file system.
Nothing here prints or exits; errors become JSON answers with their HTTP status.
"""

from __future__ import annotations

import base64
import io
import ipaddress
import json
import logging
import os
import re
import socket
import socketserver
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib.resources import files
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from cnn_mnist.analysis import network
from cnn_mnist.analysis.images import (
    NoDigit,
    NotAPicture,
    PictureTooLarge,
    load_digit,
    picture_size,
)
from cnn_mnist.analysis.network import BadPosition, NoConvolution
from cnn_mnist.analysis.number_reading import read_number
from cnn_mnist.core import paths
from cnn_mnist.core.errors import CnnError, DataError, ModelFileError, WrongDataset, shown
from cnn_mnist.core.runtime import import_tensorflow
from cnn_mnist.stages.card import ModelCard
from cnn_mnist.stages.data import BadIndex, load_for_model
from cnn_mnist.stages.handle import open_saved
from cnn_mnist.tools.predict import classifier, open_model, probabilities, read_number_with
from cnn_mnist.tools.runs import list_runs
from cnn_mnist.training.record import RunFile, read_record

if TYPE_CHECKING:
    from cnn_mnist.stages.handle import SavedModel

log = logging.getLogger(__name__)

MAX_BODY = 5 * 1024 * 1024  # bytes: larger uploads get 413
DRAIN_LIMIT = 64 * 1024 * 1024  # a larger refused body is not read: the connection is closed
CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
}
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data: blob:; "
    "style-src 'self'; script-src 'self'; frame-ancestors 'none'",
    "Referrer-Policy": "no-referrer",
}


class ApiError(CnnError):
    """A request the API cannot answer: its HTTP status and the message for the client."""

    def __init__(self, status: int, message: str, allow: str | None = None) -> None:
        super().__init__(message)
        self.status, self.allow = status, allow  # allow: the methods a 405's address takes


def error_status(exc: Exception) -> int:
    """The HTTP status for a library error: the client's fault is 4xx, ours 5xx."""
    if isinstance(exc, ApiError):
        return exc.status
    statuses = [
        (PictureTooLarge, 400),
        (NotAPicture, 415),
        (NoDigit, 422),
        (BadIndex, 404),
        (BadPosition, 400),
        (NoConvolution, 422),
        (ModelFileError, 422),
        (DataError, 503),
    ]
    for kind, status in statuses:
        if isinstance(exc, kind):
            return status
    return 400 if isinstance(exc, CnnError) else 500


# --- the models ------------------------------------------------------------------------------


@dataclass
class Served:
    """One loaded model: the fast predictor, and (once asked for) its Keras model."""

    id: str
    path: Path
    predictor: Callable[..., Any]  # LiteRTModel, or the Keras model where there is no LiteRT export
    backend: str  # "litert" or "keras"
    normalize: bool
    class_names: list[str]
    info: dict
    saved: SavedModel  # its handle
    dataset: str = "mnist"  # what it was trained on: the test digits shown are that set's
    lock: threading.Lock = field(default_factory=threading.Lock)  # an interpreter is one-at-a-time
    keras: object = None
    keras_lock: threading.Lock = field(
        default_factory=threading.Lock
    )  # feature maps: one at a time
    mistakes: np.ndarray | None = None  # test indices the model gets wrong, once computed


def read_run(log_dir: Path, run_id: str | None) -> RunFile:
    """A run's record (record.read_record), or an empty one where there is none."""
    if not isinstance(run_id, str) or not re.fullmatch(r"[\w-]+", run_id):  # a folder name
        return RunFile()
    found, _ = read_record(Path(log_dir) / run_id)
    return found or RunFile()


def model_info(path: Path, log_dir: Path, saved: SavedModel | None = None) -> dict:
    """What the page says about a model: its run, config, test accuracy, parameters, layers
    (`saved`: its handle, where it is open already; a file that cannot be opened says none)."""
    if saved is None:
        try:
            saved = open_saved(path)
        except ModelFileError:  # an empty file: listed, with nothing known
            pass
    card = saved.card if saved is not None else ModelCard()
    run_id = card.run_id
    record = read_run(log_dir, run_id)
    metrics = record.metrics
    model = (card.config or {}).get("model") or {}
    source = record.config_source
    return {
        "path": str(path),
        "run_id": run_id,
        "config": Path(str(source)).stem if source else None,
        "model_name": model.get("name"),
        "test_accuracy": metrics.test_accuracy if metrics else None,
        "params": (metrics.params if metrics else None) or (saved.params if saved else None),
        "layers": [layer.get("type") for layer in model.get("layers", [])],
        "started": record.started_at,
    }


def load_served(model_id: str, path: Path, log_dir: Path, verbose: bool = False) -> Served:
    """Load a model for serving: its LiteRT export where there is one, and warm it up."""
    saved = open_saved(path)
    predictor, backend = open_model(path, verbose, threads=1, saved=saved)  # one digit at a time
    served = Served(
        model_id,
        path,
        predictor,
        backend,
        saved.normalize,
        saved.class_names,
        model_info(path, log_dir, saved),
        saved,
        saved.dataset,
    )
    if backend == "keras":
        served.keras = predictor
    served.predictor(np.zeros((1, 28, 28, 1), np.float32))  # the interpreter's tensors, now
    return served


# --- the application: plain values in and out -------------------------------------------------


class App:
    """What the API does, without HTTP: every method takes and returns plain values."""

    def __init__(
        self,
        model_path: str | Path = paths.MODEL_PATH,
        *,
        data_path: str | None = None,
        log_dir: str | Path = paths.LOG_DIR,
        models_dir: str | Path | None = None,
        verbose: bool = False,
    ) -> None:
        self.log_dir = Path(log_dir)
        self.models_dir = Path(models_dir) if models_dir else Path(model_path).parent
        self.data_path, self.verbose = data_path, verbose
        self.setup_lock = threading.Lock()  # loading models, TensorFlow, the test set
        # As many pictures at once as there are cores: more threads only fight for the GIL
        # (bench/serve.py, 8 clients on 2 cores: all 8 at once ~250 requests/s, 2 at once ~330).
        self.busy = threading.Semaphore(os.cpu_count() or 1)
        self.loaded: dict[str, Served] = {}
        self.default_id = str(Path(model_path))
        self.current = self._load(self.default_id, Path(model_path))
        self._test_sets: dict = {}  # by dataset: models of several datasets can be served
        self._random = np.random.default_rng()

    def _load(self, model_id: str, path: Path) -> Served:
        key = os.path.realpath(path)
        with self.setup_lock:
            if key not in self.loaded:
                self.loaded[key] = load_served(model_id, path, self.log_dir, self.verbose)
            return self.loaded[key]

    # --- which model ---

    def model(self) -> dict:
        served = self.current
        return {
            "id": served.id,
            **served.info,
            "backend": served.backend,
            "normalize": served.normalize,
            "class_names": served.class_names,
            "keras_loaded": served.keras is not None,
            "tensorflow_imported": "tensorflow" in sys.modules,
        }

    def models(self) -> list[dict]:
        """The models the page can switch to: files in the models folder and beside the one
        served at start, finished runs' models in the log folder, and that one; each file once."""
        candidates = [Path(self.default_id)]
        for folder in dict.fromkeys([self.models_dir, Path(self.default_id).parent]):
            if folder.is_dir():
                candidates += sorted(
                    p
                    for p in folder.iterdir()
                    if p.suffix in (".h5", ".keras") and p.is_file() and not p.name.startswith(".")
                )  # not a save in progress
        candidates += [
            run.model_path
            for run in list_runs(self.log_dir)
            if run.status == "completed" and run.model_path is not None
        ]
        seen, out = set(), []
        for path in candidates:
            try:
                stat = path.stat()
            except OSError:
                continue
            if (stat.st_dev, stat.st_ino) in seen:  # models/x.h5 is a hard link to a run's model
                continue
            seen.add((stat.st_dev, stat.st_ino))
            served = self.loaded.get(os.path.realpath(path))  # its handle, if it is open
            out.append(
                {
                    "id": str(path),
                    **model_info(path, self.log_dir, served.saved if served else None),
                    "current": str(path) == self.current.id,
                }
            )
        return out

    def select(self, model_id: object) -> dict:
        if not isinstance(model_id, str) or model_id not in {m["id"] for m in self.models()}:
            raise ApiError(
                404, f"no model {model_id!r} to serve; choose an id that GET /api/models lists"
            )
        self.current = self._load(model_id, Path(model_id))
        return self.model()

    # --- predictions ---

    def _answer(self, served: Served, digit: np.ndarray) -> dict:
        with served.lock:
            probs = probabilities(served.predictor, digit[None], served.normalize)[0]
        names = served.class_names
        order = np.argsort(-probs, kind="stable")
        return {
            "model": served.id,
            "predicted": int(order[0]),
            "class_name": names[order[0]],
            "probability": round(float(probs[order[0]]), 6),
            "top3": [
                {"digit": int(d), "class_name": names[d], "probability": round(float(probs[d]), 6)}
                for d in order[:3]
            ],
            "probabilities": [round(float(p), 6) for p in probs],
            "input": np.round(digit.astype(np.float64), 6).tolist(),
        }

    def predict(self, body: bytes) -> dict:
        """An uploaded picture (PNG or JPEG bytes), made MNIST-like, through the model."""
        if not body:
            raise ApiError(400, "empty body: send the picture's bytes (PNG or JPEG)")
        with self.busy:
            return self._answer(self.current, load_digit(body, name="upload"))

    def predict_number(self, body: bytes) -> dict:
        """An uploaded picture of digits side by side, read as a number as `cnn predict --image
        PATH --number` reads it (number_reading.read_number, predict.read_number_with): the
        number, each digit with its box and 28x28 input, and the picture's `width` and `height`
        in the pixels the boxes are in (the picture's own)."""
        if not body:
            raise ApiError(400, "empty body: send the picture's bytes (PNG or JPEG)")
        with self.busy:
            served = self.current
            with served.lock:
                classify = classifier(served.predictor, served.normalize)
                digits = read_number(body, name="upload", classify=classify)
                read = read_number_with(
                    served.predictor, digits, served.normalize, served.class_names
                )
            width, height = picture_size(body)  # the boxes' frame
        for entry, d in zip(read["digits"], digits):
            entry["input"] = np.round(d.digit.astype(np.float64), 6).tolist()
        return {"model": served.id, **read, "width": int(width), "height": int(height)}

    def _test_set(self, served: Served):
        """The test set of the dataset `served` was trained on: from --data, else (a model of
        another dataset than --data holds) where `cnn predict` finds it without --data."""
        with self.setup_lock:
            if served.dataset not in self._test_sets:
                model = f"model {served.id}"
                try:
                    try:
                        test = load_for_model(self.data_path, served.dataset, model=model)
                    except WrongDataset:
                        if self.data_path is None:
                            raise
                        test = load_for_model(None, served.dataset, model=model)
                except DataError as exc:
                    raise DataError(f"no test digits to show: {exc}") from None
                self._test_sets[served.dataset] = test
            return self._test_sets[served.dataset]

    def _test_answer(self, served: Served, index: int) -> dict:
        mnist = self._test_set(served)
        label = int(mnist.y_test[index])
        answer = self._answer(served, mnist.x_test[index].astype(np.float32) / np.float32(255))
        return {
            "index": index,
            "label": label,
            "label_name": served.class_names[label],
            "correct": answer["predicted"] == label,
            **answer,
        }

    def test_digit(self, index: int) -> dict:
        count = len(self._test_set(self.current).x_test)
        if not 0 <= index < count:  # said for the page, not as `cnn predict`'s --index
            raise ApiError(
                404,
                f"no test digit {index}: the test set has {count:,} images, so "
                f"valid indices are 0 to {count - 1}",
            )
        return self._test_answer(self.current, index)

    def mistake(self) -> dict:
        """A random test digit that the model gets wrong."""
        served = self.current
        if served.mistakes is None:
            mnist = self._test_set(served)
            with self.setup_lock:  # once per model, and LiteRT's set-up hides stderr meanwhile
                if served.mistakes is None:
                    served.mistakes = self._find_mistakes(served, mnist)
        if not len(served.mistakes):
            raise ApiError(404, "the model gets every test digit right: no mistake to show")
        return self._test_answer(served, int(self._random.choice(served.mistakes)))

    @staticmethod
    def _find_mistakes(served: Served, mnist) -> np.ndarray:
        x = mnist.x_test.astype(np.float32) / np.float32(255)
        if served.backend in ("litert", "onnx"):  # its own runtime: the served one stays at batch 1
            probs = probabilities(served.saved.predictor()[0], x, served.normalize)
        else:
            with served.lock:
                probs = probabilities(served.predictor, x, served.normalize)
        return np.flatnonzero(probs.argmax(axis=1) != mnist.y_test)

    # --- inside the network ---

    def _keras(self, served: Served):
        with self.setup_lock:
            if served.keras is None:
                if served.saved.is_keras:
                    import_tensorflow(self.verbose)
                served.keras = served.saved.keras_model("the network's views")
            return served.keras

    def features(self, digit: np.ndarray) -> dict:
        """Each convolution and pooling layer's feature maps for a 28x28 input, tiled as
        `cnn inspect` tiles them (network.tile: channel k at row k // columns, column
        k % columns, 1-pixel borders), as PNG data URLs on one colour scale per layer."""
        served = self.current
        model = self._keras(served)
        network.check_has_convolution(model, str(served.path))
        x = network.model_input(digit, served.normalize)
        with served.keras_lock:
            outs = network.activations(model, x)
        layers = []
        for i in network.conv_pool_layers(model):
            layers.append(
                _layer_maps(
                    network, model.layers[i], i, outs[i][0], (outs[i - 1] if i else x)[0].shape
                )
            )
        return {"model": served.id, "layers": layers}

    def explain(self, digit: np.ndarray, at: object) -> dict:
        """One feature-map value worked out by hand, as `cnn inspect --at LAYER:ROW,COL,CHANNEL`."""
        if not isinstance(at, str):
            raise ApiError(400, '"at" must be a string LAYER:ROW,COL,CHANNEL, e.g. "0:13,13,5"')
        position = network.parse_at(at)
        served = self.current
        model = self._keras(served)
        with served.keras_lock:
            e = network.explain_at(model, digit, *position, normalize=served.normalize)
        size = [int(s) for s in model.layers[position[0]].input.shape[1:3]]
        out = {
            "model": served.id,
            "at": "{}:{},{},{}".format(*position),
            **_plain(e.to_dict()),
            "input_size": size,
            "text": network.format_explanation(e),
        }
        if isinstance(e, network.ConvExplanation):
            out.update(patch=_plain(e.patch), kernel=_plain(e.kernel), products=_plain(e.products))
        return out


def _plain(value):
    """numpy values and nested containers -> JSON-ready floats (6 decimals), ints and lists."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return _plain(value.tolist())
    if isinstance(value, (float, np.floating)):
        return None if not np.isfinite(value) else round(float(value), 6)
    if isinstance(value, np.integer):
        return int(value)
    return value


def _layer_maps(network, layer, index: int, maps: np.ndarray, in_shape) -> dict:
    from PIL import Image

    tiled = network.tile(maps)
    buffer = io.BytesIO()
    Image.fromarray(network.to_rgb8(tiled, "viridis"), "RGB").save(buffer, "PNG")
    h, w, c = (int(s) for s in maps.shape)
    rows, columns = network.grid_shape(c)
    zero, top = network.channel_summary(maps)
    return {
        "index": index,
        "name": layer.name,
        "type": type(layer).__name__,
        "shape": [h, w, c],
        "arithmetic": network.arithmetic(layer, in_shape),
        "min": round(float(maps.min()), 6),
        "max": round(float(maps.max()), 6),
        "zero_channels": zero,
        "top_channels": top,
        "grid": {"rows": rows, "columns": columns, "tile": [h, w], "border": 1},
        "png": "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode(),
    }


def digit_from_json(value: object) -> np.ndarray:
    """The "input" of a request: 28 rows of 28 numbers in [0, 1], as /api/predict answers."""
    try:
        digit = np.asarray(value, dtype=np.float32)
    except (TypeError, ValueError):
        digit = None
    if (
        digit is None
        or digit.shape != (28, 28)
        or not np.isfinite(digit).all()
        or digit.min() < 0
        or digit.max() > 1
    ):
        raise ApiError(
            400, '"input" must be 28 rows of 28 numbers from 0 to 1, as /api/predict answers it'
        )
    return digit


# --- HTTP ------------------------------------------------------------------------------------


def static_files() -> dict[str, tuple[bytes, str]]:
    """The page's files by URL path, read once from the package."""
    folder = files("cnn_mnist.tools") / "static"
    table = {}
    for item in folder.iterdir():
        suffix = Path(item.name).suffix
        if item.is_file() and suffix in CONTENT_TYPES:
            table[f"/static/{item.name}"] = (item.read_bytes(), CONTENT_TYPES[suffix])
    table["/"] = table.pop("/static/index.html")
    return table


ROUTES: list[tuple[re.Pattern, dict[str, str]]] = [
    (re.compile(r"/api/predict"), {"POST": "predict"}),
    (re.compile(r"/api/number"), {"POST": "number"}),
    (re.compile(r"/api/model"), {"GET": "model", "POST": "select"}),
    (re.compile(r"/api/models"), {"GET": "models"}),
    (re.compile(r"/api/test/mistake"), {"GET": "mistake"}),
    (re.compile(r"/api/test/(-?\d{1,9})"), {"GET": "test"}),
    (re.compile(r"/api/features"), {"POST": "features"}),
    (re.compile(r"/api/explain"), {"POST": "explain"}),
]


class Handler(BaseHTTPRequestHandler):
    """One request: a static file from the table, or an API call answered in JSON."""

    server_version = "cnn-serve"
    protocol_version = "HTTP/1.1"  # keep-alive: clients reuse their connection
    timeout = 60  # seconds a silent client may hold its thread
    # Headers and body go out in two writes; with Nagle's algorithm the body would wait for the
    # client's delayed ACK of the headers (40 ms on Linux) on every keep-alive request.
    disable_nagle_algorithm = True
    server: Server  # the one that made this handler: its app and static files

    def do_GET(self) -> None:
        self._dispatch()

    do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = do_HEAD = do_GET

    def _dispatch(self) -> None:
        path = self.path.split("?", 1)[0].split("#", 1)[0]
        try:
            if path in self.server.static:
                if self.command not in ("GET", "HEAD"):
                    raise ApiError(
                        405,
                        f"{self.command} {path}: the page's files are read with GET",
                        allow="GET, HEAD",
                    )
                body, kind = self.server.static[path]
                return self._send(200, body, kind, {"Cache-Control": "no-cache"})
            self._json(200, self._api(path))
        except Exception as exc:  # every failure is an answer; the server goes on
            status = error_status(exc)
            if not isinstance(exc, CnnError):  # a bug, not a request we cannot answer
                log.exception("%s %s failed", self.command, path)
                message = f"internal error ({type(exc).__name__}: {exc}); the server goes on"
            else:
                message = str(exc)
            headers = {"Allow": exc.allow} if isinstance(exc, ApiError) and exc.allow else None
            self._json(status, {"error": message, "status": status}, headers)

    def _api(self, path: str):
        for pattern, methods in ROUTES:
            found = pattern.fullmatch(path)
            if found is None:
                continue
            if self.command not in methods:
                raise ApiError(
                    405,
                    f"{self.command} {path}: this address takes {' or '.join(methods)}",
                    allow=", ".join(methods),
                )
            return getattr(self, f"_api_{methods[self.command]}")(*found.groups())
        raise ApiError(
            404,
            f"{path}: no such page or API address (the API: /api/predict, "
            "/api/number, /api/model, /api/models, /api/test/N, /api/test/mistake, "
            "/api/features, /api/explain)",
        )

    def _api_predict(self):
        return self.server.app.predict(self._body())

    def _api_number(self):
        return self.server.app.predict_number(self._body())

    def _api_model(self):
        return self.server.app.model()

    def _api_select(self):
        return self.server.app.select(self._json_body().get("id"))

    def _api_models(self):
        return {"models": self.server.app.models()}

    def _api_test(self, index: str):
        return self.server.app.test_digit(int(index))

    def _api_mistake(self):
        return self.server.app.mistake()

    def _api_features(self):
        return self.server.app.features(digit_from_json(self._json_body().get("input")))

    def _api_explain(self):
        request = self._json_body()
        return self.server.app.explain(digit_from_json(request.get("input")), request.get("at"))

    def _body(self) -> bytes:
        """The request body, if it has a Content-Length within MAX_BODY."""
        if self.headers.get("Transfer-Encoding"):
            self.close_connection = True
            raise ApiError(411, "send the body with a Content-Length (chunked bodies are not read)")
        length = self.headers.get("Content-Length")
        if length is None:
            raise ApiError(411, "a Content-Length is needed: send the picture's bytes as the body")
        digits = length.strip()
        # ASCII digits only: str.isdigit() is true for '²', which int() refuses (a 500).
        if not (digits.isascii() and digits.isdigit()):
            self.close_connection = True
            raise ApiError(400, f"Content-Length {shown(length)} is not a number of bytes")
        # int() refuses more than 4,300 digits (a 500); 19 are more than any drain.
        size = int(digits) if len(digits) < 19 else DRAIN_LIMIT + 1
        if size > MAX_BODY:
            self._discard(size)
            told = (
                f"{size:,} bytes" if len(digits) < 19 else f"a {len(digits)}-digit number of bytes"
            )
            raise ApiError(
                413,
                f"the body is {told}; the limit is {MAX_BODY // 2**20} MB "
                f"({MAX_BODY:,} bytes): send a smaller picture",
            )
        return self.rfile.read(size)

    def _discard(self, size: int) -> None:
        """Read a refused body away, so the client gets its answer; or close if it is huge."""
        if size > DRAIN_LIMIT:
            self.close_connection = True
            return
        while size > 0:
            chunk = self.rfile.read(min(size, 1 << 16))
            if not chunk:
                break
            size -= len(chunk)

    def _json_body(self) -> dict:
        try:
            request = json.loads(self._body())
        except (ValueError, UnicodeDecodeError):
            request = None
        if not isinstance(request, dict):
            raise ApiError(
                400,
                "expected a JSON object as the body, e.g. "
                '{"input": [[...28 numbers...], ...28 rows]}',
            )
        return request

    def _json(self, status: int, value, headers: dict | None = None) -> None:
        body = json.dumps(value, separators=(",", ":")).encode()
        self._send(status, body, "application/json", headers)

    def _send(self, status: int, body: bytes, kind: str, headers: dict | None = None) -> None:
        try:
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            for name, value in {**SECURITY_HEADERS, **(headers or {})}.items():
                self.send_header(name, value)
            if self.close_connection:
                self.send_header("Connection", "close")
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):  # the client left: nothing to answer
            self.close_connection = True

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """http.server's own errors (a malformed request line, an unknown method) in JSON."""
        self.close_connection = True
        if self.request_version == "HTTP/0.9":  # not even a request line: answer with a status
            self.request_version = "HTTP/1.0"
        status = HTTPStatus(code)
        text = message or status.phrase
        if code == 501:
            text = f"method {self.command!r} not supported: use GET or POST"
        self._json(code, {"error": text, "status": code})

    def log_message(self, format: str, *args) -> None:  # noqa: A002 - http.server's name
        if log.isEnabledFor(logging.DEBUG):  # -v: one line per request
            log.debug("%s %s", self.address_string(), format % args)


class Server(ThreadingHTTPServer):
    """A thread per request; threads end with the process (Ctrl-C does not wait for them)."""

    daemon_threads = True
    request_queue_size = 128  # socketserver's 5 drops connections from a few busy clients

    def __init__(self, address: tuple[str, int], app: App) -> None:
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self.app, self.static = app, static_files()
        super().__init__(address, Handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind looks the host's name up (socket.getfqdn): slow without DNS.

        socketserver.TCPServer.server_bind(self)
        # The bound address (server_address, typed as what bind takes: a host in bytes too).
        self.server_name, self.server_port = self.socket.getsockname()[:2]


def make_server(app: App, host: str = "127.0.0.1", port: int = 8000) -> Server:
    """The server, listening (port 0: any free port); serve with `serve_forever()`."""
    try:
        return Server((host, port), app)
    except socket.gaierror as exc:
        raise CnnError(
            f"--host {host}: not an address of this machine ({exc.strerror}); "
            "use 127.0.0.1, or 0.0.0.0 for every interface"
        ) from None
    except OSError as exc:
        raise CnnError(
            f"cannot listen on {host}:{port} ({exc.strerror or exc}); another "
            f"program may use the port: try --port {port + 1 if port else 8000}"
        ) from None


def url(server: Server) -> str:
    host, port = server.server_name, server.server_port
    return f"http://[{host}]:{port}/" if ":" in host else f"http://{host}:{port}/"


def is_loopback(host: str) -> bool:
    """Whether `host` is only reachable from this machine (127.0.0.1, ::1, localhost)."""
    try:
        infos = socket.getaddrinfo(host, None)
    except socket.gaierror:
        return False
    return bool(infos) and all(
        ipaddress.ip_address(str(info[4][0]).split("%")[0]).is_loopback for info in infos
    )
