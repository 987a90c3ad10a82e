"""The lecture's script (COMP2211 "Convolutional Neural Network"), steps 1-8, as a reference.

Same model and calls: raw 0-255 pixels, Sequential with input_shape, Adam, categorical
cross-entropy, batch 128, 1 epoch, the test set as validation data, TensorBoard with
histogram_freq=1, evaluate, save .h5, load, predict index 10. The only change: MNIST is read from
$CNN_MNIST_DATA when set (these machines are offline), as the same arrays load_data() returns.
Prints one JSON line with the results.
"""

import datetime
import gzip
import json
import os
import sys
import tempfile

import numpy as np
from keras.callbacks import TensorBoard
from keras.datasets import mnist
from keras.layers import Conv2D, Dense, Dropout, Flatten, MaxPooling2D
from keras.models import Sequential, load_model
from keras.utils import to_categorical
from tensorflow.keras.metrics import categorical_crossentropy

batch_size = 128
num_classes = 10
epochs = 1


def idx(path):
    raw = gzip.decompress(open(path, "rb").read())
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(raw, np.uint8, offset=4 + 4 * ndim).reshape(dims)


folder = os.environ.get("CNN_MNIST_DATA")
if folder:
    x_train, y_train, x_test, y_test = (
        idx(os.path.join(folder, f"{n}.gz"))
        for n in (
            "train-images-idx3-ubyte",
            "train-labels-idx1-ubyte",
            "t10k-images-idx3-ubyte",
            "t10k-labels-idx1-ubyte",
        )
    )
else:
    (x_train, y_train), (x_test, y_test) = mnist.load_data()

x_train = x_train.reshape(60000, 28, 28, 1)
x_test = x_test.reshape(10000, 28, 28, 1)
y_train = to_categorical(y_train, num_classes)
y_test = to_categorical(y_test, num_classes)

model = Sequential()
model.add(Conv2D(filters=32, kernel_size=(3, 3), activation="relu", input_shape=(28, 28, 1)))
model.add(Conv2D(filters=64, kernel_size=(3, 3), activation="relu"))
model.add(MaxPooling2D(pool_size=(2, 2)))
model.add(Dropout(0.25))
model.add(Flatten())
model.add(Dense(units=128, activation="relu"))
model.add(Dropout(0.5))
model.add(Dense(units=num_classes, activation="softmax"))
model.compile(optimizer="adam", loss=categorical_crossentropy, metrics=["accuracy"])

workdir = tempfile.mkdtemp(prefix="lecture-")
log_dir = os.path.join(workdir, "logs", "fit", datetime.datetime.now().strftime("%Y%m%d-%H%M%S"))
tensorboard_callback = TensorBoard(log_dir=log_dir, histogram_freq=1)
model.fit(
    x_train,
    y_train,
    batch_size=batch_size,
    epochs=epochs,
    validation_data=(x_test, y_test),
    callbacks=[tensorboard_callback],
    verbose=0,
)
validation_loss, validation_accuracy = model.evaluate(x_test, y_test, verbose=0)

model_name = os.path.join(workdir, "digits_recognition_cnn.h5")
model.save(model_name)
loaded_model = load_model(model_name)
prediction = loaded_model.predict(x_test[10].reshape(1, 28, 28, 1), verbose=0)
print(
    json.dumps(
        {
            "test_loss": validation_loss,
            "test_accuracy": validation_accuracy,
            "predicted_10": int(prediction.argmax()),
        }
    )
)
sys.stdout.flush()
