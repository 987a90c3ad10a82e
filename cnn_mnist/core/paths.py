"""Where things go by default, relative to the folder `cnn` runs in. The schema's defaults and
the CLI's options both read these, so each lives in one place (and `cnn --help` needs no
pydantic to show them)."""

MODEL_PATH = "models/digits_recognition_cnn.h5"  # the lecture's name for the trained model
LOG_DIR = "logs/fit"  # one folder per training run, read by TensorBoard and `cnn train --resume`
EVALUATE_DIR = "logs/evaluate"  # one folder per `cnn evaluate`
INSPECT_DIR = "logs/inspect"  # one folder per `cnn inspect`
