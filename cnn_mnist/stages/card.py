"""The model card: what a model file says about itself, typed.

`ModelCard` is the JSON object each model `cnn` writes carries under the key `cnn_mnist` (in
the .h5 or .keras, save.py; in each export, formats.py): the run that trained it, its resolved
config, its dataset and class names, the SHA-256 of the LiteRT export `cnn train` keeps beside
it, and, in an export, the input it takes and what kind of export it is. The run builds it once
(training/pipeline.py), save.py and formats.py write it, and the model's handle (saved.py) is
its one reader, which describes a model without a card from what its file shows.

Like run.json's RunFile (training/record.py), every field is optional, so an older model's card,
or none, still reads, and fields this version does not know (a best.h5's epoch and monitored
value) are kept as they are. On disk a card holds the fields that were set, under the same names
as ever (no defaults are added). No I/O here: the readers and writers hand in and take JSON.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

METADATA_KEY = "cnn_mnist"  # the card's name in every format: an HDF5 attribute, a zip entry...


class _Part(BaseModel):
    """A part of the card: known fields typed, unknown ones kept."""

    model_config = ConfigDict(extra="allow", validate_assignment=True)

    def to_json(self) -> dict[str, Any]:
        """The fields that were set, as the model file holds them."""
        return self.model_dump(exclude_unset=True)


class ExportInfo(_Part):
    """What kind of export a file is (`cnn export`, or the .tflite `cnn train` writes)."""

    format: str | None = None  # litert, onnx, saved_model
    quantize: str | None = None  # none, float16, int8


class ModelCard(_Part):
    """A model file's card; see the module docstring."""

    run_id: str | None = None
    config: dict[str, Any] | None = None  # the resolved config, as the run's config.yaml has it
    dataset: str | None = None  # mnist, fashion_mnist or custom
    class_names: list[str] | None = None  # label 0 to 9
    litert_sha256: str | None = None  # of the .tflite exported with it (not in an export)
    input_shape: list[int] | None = None  # in an export: one image's, (28, 28, 1)
    export: ExportInfo | None = None  # in an export: its format and quantization

    @classmethod
    def read(cls, data: Any) -> ModelCard:
        """The card in a model file's JSON object; an empty card for anything else. A field
        whose value is not of its type (a file from elsewhere) reads as missing."""
        if not isinstance(data, dict):
            return cls()
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            wrong = {error["loc"][0] for error in exc.errors() if error["loc"]}
        try:
            return cls.model_validate({k: v for k, v in data.items() if k not in wrong})
        except ValidationError:
            return cls()

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
