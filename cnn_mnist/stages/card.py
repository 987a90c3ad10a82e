"""The model card: what a model file says about itself, typed.

`ModelCard` is the JSON object each model `cnn` writes carries under the key `cnn_mnist` (in
the .h5 or .keras, save.py; in each export, formats.py): the run that trained it, its resolved
config, its dataset and class names, the SHA-256 of the LiteRT export `cnn train` keeps beside
it, and, in an export, the input it takes and what kind of export it is. The run builds it once
(training/pipeline.py), save.py and formats.py write it, and the model's handle (handle.py) is
its one reader, which describes a model without a card from what its file shows.

Like run.json's RunFile (training/record.py), every field is optional, so an older model's card,
or none, still reads, and fields this version does not know (a best.h5's epoch and monitored
value) are kept as they are. On disk a card holds the fields that were set, under the same names
as ever (no defaults are added). No I/O here: the readers and writers hand in and take JSON.

Plain Python rather than pydantic, unlike RunFile: every `cnn predict` reads a card, and
importing pydantic and building the model classes cost that command about 0.1 s of its 0.23
(measured with `python -X importtime`, AMD EPYC Zen 4); seven fields are checked here by hand.
"""

from __future__ import annotations

import json
from typing import Any, Callable, ClassVar, TypeVar

P = TypeVar("P", bound="_Part")
METADATA_KEY = "cnn_mnist"  # the card's name in every format: an HDF5 attribute, a zip entry...


def _optional(check: Callable[[Any], bool]) -> Callable[[Any], bool]:
    return lambda value: value is None or check(value)


def _list_of(kind: type) -> Callable[[Any], bool]:
    return _optional(
        lambda v: (
            isinstance(v, list) and all(isinstance(x, kind) and not isinstance(x, bool) for x in v)
        )
    )


_STR = _optional(lambda v: isinstance(v, str))
_DICT = _optional(lambda v: isinstance(v, dict))


class _Part:
    """A part of the card: known fields (FIELDS, in the order they are written) checked when
    set, unknown ones kept as they are; a field never set reads as None and is not written."""

    FIELDS: ClassVar[dict[str, Callable[[Any], bool]]] = {}

    def __init__(self, **values: Any) -> None:
        object.__setattr__(self, "_values", {})
        for name, value in values.items():
            setattr(self, name, value)

    def _convert(self, name: str, value: Any) -> Any:
        return value

    def __setattr__(self, name: str, value: Any) -> None:
        value = self._convert(name, value)
        check = self.FIELDS.get(name)
        if check is not None and not check(value):
            raise TypeError(f"card field {name}: {type(value).__name__} is not its type")
        self._values[name] = value

    def __getattr__(self, name: str) -> Any:
        values = self.__dict__.get("_values", {})
        if name in values:
            return values[name]
        if name in self.FIELDS:
            return None
        raise AttributeError(name)

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and other.to_json() == self.to_json()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.to_json()!r})"

    def to_json(self) -> dict[str, Any]:
        """The fields that were set, as the model file holds them: the known ones in their
        order, then the others as they came."""
        values = self._values
        order = [n for n in self.FIELDS if n in values] + [
            n for n in values if n not in self.FIELDS
        ]
        return {
            n: values[n].to_json() if isinstance(values[n], _Part) else values[n] for n in order
        }

    @classmethod
    def read(cls: type[P], data: Any) -> P:
        """The card in a model file's JSON object; an empty card for anything else. A field
        whose value is not of its type (a file from elsewhere) reads as missing."""
        card = cls()
        for name, value in data.items() if isinstance(data, dict) else ():
            try:
                setattr(card, name, value)
            except TypeError:
                pass
        return card

    def model_copy(self, update: dict[str, Any] | None = None) -> Any:
        """A copy, with the fields in `update` set (as pydantic's model_copy)."""
        return type(self)(**{**self._values, **(update or {})})


class ExportInfo(_Part):
    """What kind of export a file is (`cnn export`, or the .tflite `cnn train` writes)."""

    format: str | None  # litert, onnx, saved_model
    quantize: str | None  # none, float16, int8
    FIELDS = {"format": _STR, "quantize": _STR}


class ModelCard(_Part):
    """A model file's card; see the module docstring."""

    run_id: str | None
    config: dict[str, Any] | None  # the resolved config, as the run's config.yaml has it
    dataset: str | None  # mnist, fashion_mnist or custom
    class_names: list[str] | None  # label 0 to 9
    litert_sha256: str | None  # of the .tflite exported with it (not in an export)
    input_shape: list[int] | None  # in an export: one image's, (28, 28, 1)
    export: ExportInfo | None  # in an export: its format and quantization
    FIELDS = {
        "run_id": _STR,
        "config": _DICT,
        "dataset": _STR,
        "class_names": _list_of(str),
        "litert_sha256": _STR,
        "input_shape": _list_of(int),
        "export": _optional(lambda v: isinstance(v, ExportInfo)),
    }

    def _convert(self, name: str, value: Any) -> Any:
        return ExportInfo.read(value) if name == "export" and isinstance(value, dict) else value

    @classmethod
    def from_text(cls, text: str | bytes | None) -> ModelCard:
        """The card in a model file's JSON text; an empty card where there is none, or where
        the text is not JSON."""
        try:
            return cls.read(json.loads(text) if text else {})
        except ValueError:
            return cls()

    def to_text(self) -> str:
        """The card as the model file stores it: JSON, the fields that were set."""
        return json.dumps(self.to_json())
