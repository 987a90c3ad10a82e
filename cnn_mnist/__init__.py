"""cnn-mnist: train, evaluate, save and use a CNN for handwritten digits (MNIST) with Keras 3."""

__version__ = "0.1.0"
