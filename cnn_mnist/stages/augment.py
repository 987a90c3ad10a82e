"""Data augmentation (`data.augment`): random shifts, rotations, zooms, stroke thickness and
elastic distortion of each training batch, inside the tf.data pipeline (train.make_dataset).

Every draw is stateless: a function of the run's seed, the epoch and the batch's number alone.
A run resumed from its backup therefore sees the images the uninterrupted run saw, and every
worker of a cluster makes the same global batch before it keeps its share (see EpochSeeds).
Keras's preprocessing layers (RandomRotation, ...) draw from a SeedGenerator whose state a new
process starts over, so the transform is built here from the same TensorFlow ops instead.

The shift, rotation, zoom and elastic displacement are composed into one map of sampling
coordinates and the picture is resampled once (bilinear, zero outside): four separate layers
would blur it four times. Stroke thickness comes first, on the sharp digit.
"""

from __future__ import annotations

import math

import numpy as np
import tensorflow as tf

from cnn_mnist.config.schema import AugmentConfig

# Folded into the key so that these draws never coincide with the shuffle's (same seed, epoch).
_TAG = 0x41554720  # "AUG "
_PARTS = 6  # independent draws per batch: thickness, angle, scale, shift, elastic y, elastic x


def batch_key(seed: int | tf.Tensor, epoch: int | tf.Tensor, batch: int | tf.Tensor) -> tf.Tensor:
    """The stateless key of one batch's draws: a function of (seed, epoch, batch) alone."""
    key = tf.stack([tf.cast(seed, tf.int64), tf.cast(epoch, tf.int64)])
    key = tf.random.experimental.stateless_fold_in(key, _TAG)
    return tf.random.experimental.stateless_fold_in(key, tf.cast(batch, tf.int64))


def augment_batch(x: tf.Tensor, key: tf.Tensor, config: AugmentConfig) -> tf.Tensor:
    """A batch (B, H, W, 1) of float images, ink bright on a zero background, changed as
    `config` says, each image by its own random draw from `key`."""
    keys = tf.random.experimental.stateless_split(key, _PARTS)
    if config.thickness:
        x = _thickness(x, keys[0], config.thickness)
    if config.shift or config.rotation or config.zoom or config.elastic_alpha:
        x = _resample(x, _coordinates(tf.shape(x), x.shape, keys, config))
    return x


def _uniform(shape, key, limit: float) -> tf.Tensor:
    return tf.random.stateless_uniform(shape, key, -limit, limit, dtype=tf.float32)


def _thickness(x: tf.Tensor, key: tf.Tensor, limit: float) -> tf.Tensor:
    """Thicker or thinner strokes: grey-level dilation (3x3 max pooling) or erosion (the same
    on the negative), blended in by a fraction t drawn from -limit..limit per image (t = 1:
    a whole pixel more ink on every side of a stroke; t = -1: one less)."""
    t = _uniform(tf.stack([tf.shape(x)[0], 1, 1, 1]), key, limit)
    dilated = tf.nn.max_pool2d(x, 3, 1, "SAME")
    eroded = -tf.nn.max_pool2d(-x, 3, 1, "SAME")
    return x + tf.nn.relu(t) * (dilated - x) + tf.nn.relu(-t) * (eroded - x)


def _coordinates(
    shape: tf.Tensor, static: tf.TensorShape, keys: tf.Tensor, config: AugmentConfig
) -> tf.Tensor:
    """Where each output pixel is read from, (B, H, W, 2) as (row, column): the inverse of a
    rotation and zoom about the centre and a shift, plus the elastic displacement."""
    batch, height, width = shape[0], shape[1], shape[2]
    rows = tf.cast(tf.range(height), tf.float32) - (tf.cast(height, tf.float32) - 1) / 2
    cols = tf.cast(tf.range(width), tf.float32) - (tf.cast(width, tf.float32) - 1) / 2
    grid_r, grid_c = tf.meshgrid(rows, cols, indexing="ij")  # (H, W), about the centre
    per_image = tf.stack([batch, 1, 1])
    angle = _uniform(per_image, keys[1], config.rotation * math.pi / 180)
    scale = 1.0 + _uniform(per_image, keys[2], config.zoom)
    shift = _uniform(tf.stack([batch, 1, 1, 2]), keys[3], config.shift)
    # The output point p shows the input point c + R(-angle) (p - c - shift) / scale.
    r, c = grid_r[None] - shift[..., 0], grid_c[None] - shift[..., 1]
    cos, sin = tf.cos(angle) / scale, tf.sin(angle) / scale
    source_r = cos * r - sin * c + (tf.cast(height, tf.float32) - 1) / 2
    source_c = sin * r + cos * c + (tf.cast(width, tf.float32) - 1) / 2
    coords = tf.stack([source_r, source_c], axis=-1)
    if config.elastic_alpha:
        coords += _elastic(
            tf.stack([batch, height, width]),
            keys[4:],
            config.elastic_alpha,
            config.elastic_sigma,
            *static[1:3],
        )
    return coords


def _elastic(
    shape: tf.Tensor, keys: tf.Tensor, alpha: float, sigma: float, height: int, width: int
) -> tf.Tensor:
    """Simard et al. (2003)'s displacement field, (B, H, W, 2): uniform noise in -1..1 per
    pixel and direction, smoothed by a Gaussian of `sigma` pixels, times `alpha`."""
    noise = tf.stack(
        [tf.random.stateless_uniform(shape, k, -1.0, 1.0) for k in tf.unstack(keys)], axis=1
    )  # (B, 2, H, W)
    # The Gaussian filter as two small matrices (rows, then columns): two batched products of
    # 28x28 matrices cost a fraction of a convolution with a 25-tap kernel.
    smooth = tf.matmul(
        tf.matmul(gaussian_matrix(height, sigma), noise),
        gaussian_matrix(width, sigma),
        transpose_b=True,
    )
    return alpha * tf.transpose(smooth, [0, 2, 3, 1])


def gaussian_matrix(size: int, sigma: float) -> tf.Tensor:
    """(size, size): M @ v is v filtered by a normalized Gaussian of `sigma`, truncated at 3
    sigma and mirrored at the ends (scipy.ndimage.gaussian_filter's default, 'reflect': the
    border moves as much as the middle)."""
    radius = int(math.ceil(3 * sigma))
    offsets = np.arange(-radius, radius + 1)
    weights = np.exp(-0.5 * (offsets / sigma) ** 2)
    weights /= weights.sum()
    matrix = np.zeros((size, size))
    for i in range(size):
        for offset, weight in zip(offsets, weights):
            j = i + offset
            while not 0 <= j < size:  # mirrored: -1 -> 0, size -> size - 1
                j = -j - 1 if j < 0 else 2 * size - j - 1
            matrix[i, j] += weight
    return tf.constant(matrix, tf.float32)


def _resample(x: tf.Tensor, coords: tf.Tensor) -> tf.Tensor:
    """Bilinear sampling of x (B, H, W, 1) at coords (B, H, W, 2); zero outside the picture."""
    shape = tf.shape(x)
    batch, height, width = shape[0], shape[1], shape[2]
    flat = tf.reshape(x, [-1])
    base = tf.reshape(tf.range(batch) * height * width, [-1, 1, 1])
    top, left = tf.floor(coords[..., 0]), tf.floor(coords[..., 1])
    dr, dc = coords[..., 0] - top, coords[..., 1] - left
    top, left = tf.cast(top, tf.int32), tf.cast(left, tf.int32)
    out = tf.zeros_like(dr)
    for r, wr in ((top, 1.0 - dr), (top + 1, dr)):
        for c, wc in ((left, 1.0 - dc), (left + 1, dc)):
            inside = (r >= 0) & (r < height) & (c >= 0) & (c < width)
            index = (
                base
                + tf.clip_by_value(r, 0, height - 1) * width
                + tf.clip_by_value(c, 0, width - 1)
            )
            value = tf.gather(flat, index)
            out += tf.where(inside, wr * wc * value, 0.0)
    return out[..., None]
