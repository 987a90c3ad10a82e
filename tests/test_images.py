import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image, ImageDraw

from cnn_mnist.images import MAX_PIXELS, ImageError, load_digit, save_digit_png, to_mnist
from tests.conftest import paper_picture, synthetic_digits


def _centre_of_mass(digit):
    ys, xs = np.indices(digit.shape)
    return (ys * digit).sum() / digit.sum(), (xs * digit).sum() / digit.sum()


def _drawn_one(size=(300, 200), box=(40, 30, 80, 170), ink=20, paper=235):
    image = Image.new("L", size, paper)
    ImageDraw.Draw(image).rectangle(box, fill=ink)
    return image


@pytest.mark.parametrize("suffix", ["png", "jpg"])
def test_dark_on_light_becomes_mnist_like(tmp_path, suffix):
    path = tmp_path / f"one.{suffix}"
    _drawn_one().save(path)
    digit = load_digit(path)
    assert digit.shape == (28, 28) and digit.dtype == np.float32
    assert digit.max() == pytest.approx(1.0) and digit.min() >= 0
    rows, cols = np.nonzero(digit > 0.1)
    assert rows.max() - rows.min() + 1 <= 21 and cols.max() - cols.min() + 1 <= 21
    assert rows.max() - rows.min() + 1 >= 19  # the long side fills the 20-pixel box
    cy, cx = _centre_of_mass(digit)
    assert abs(cy - 14) < 1 and abs(cx - 14) < 1
    assert digit[0].max() == 0 and digit[:, 0].max() == 0  # background removed


def test_light_on_dark_is_not_inverted(tmp_path):
    dark = Image.fromarray(255 - np.asarray(_drawn_one()))
    dark.save(tmp_path / "dark.png")
    _drawn_one().save(tmp_path / "light.png")
    np.testing.assert_allclose(load_digit(tmp_path / "dark.png"), load_digit(tmp_path / "light.png"),
                               atol=1e-5)


def test_position_and_size_do_not_matter(tmp_path):
    small = _drawn_one(size=(400, 400), box=(300, 300, 310, 335))
    large = _drawn_one(size=(400, 400), box=(10, 10, 110, 360))
    small.save(tmp_path / "small.png")
    large.save(tmp_path / "large.png")
    np.testing.assert_allclose(load_digit(tmp_path / "small.png"), load_digit(tmp_path / "large.png"),
                               atol=0.35)


def test_real_digit_survives_the_round_trip(tmp_path):
    images, _ = synthetic_digits(1)
    rng = np.random.default_rng(0)
    picture = paper_picture(images[0], rng)
    picture.save(tmp_path / "d.png")
    digit = load_digit(tmp_path / "d.png")
    cy, cx = _centre_of_mass(digit)
    assert abs(cy - 14) < 1.5 and abs(cx - 14) < 1.5


def test_transparent_png(tmp_path):
    image = Image.new("RGBA", (100, 100), (0, 0, 0, 0))
    ImageDraw.Draw(image).ellipse((30, 20, 60, 80), outline=(0, 0, 0, 255), width=6)
    image.save(tmp_path / "t.png")
    digit = load_digit(tmp_path / "t.png")
    assert digit[14, 14] < 0.2 and digit.max() == pytest.approx(1.0)  # a ring: hollow middle


def test_blank_picture_is_an_error(tmp_path):
    Image.new("L", (200, 200), 240).save(tmp_path / "blank.png")
    with pytest.raises(ImageError, match="blank.png: no digit found"):
        load_digit(tmp_path / "blank.png")
    noisy = np.random.default_rng(0).normal(230, 5, (100, 100)).clip(0, 255).astype(np.uint8)
    Image.fromarray(noisy).save(tmp_path / "noisy.png")
    with pytest.raises(ImageError, match="no digit found"):
        load_digit(tmp_path / "noisy.png")


def test_not_an_image(tmp_path):
    (tmp_path / "notes.png").write_text("not a picture")
    with pytest.raises(ImageError, match="notes.png: not an image"):
        load_digit(tmp_path / "notes.png")
    with pytest.raises(ImageError, match="no such image file"):
        load_digit(tmp_path / "missing.png")


def test_save_digit_png(tmp_path):
    digit = to_mnist(np.asarray(_drawn_one(), np.float32))
    path = save_digit_png(digit, tmp_path / "out" / "seen.png")
    saved = np.asarray(Image.open(path))
    assert saved.shape == (28, 28) and saved.max() == 255


def _bilevel_png(width, height):
    """A valid all-black 1-bit PNG of any size, written row by row: a few kB on disk or in memory."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    row = bytes(1 + (width + 7) // 8)  # filter byte, then 8 pixels a byte
    packer = zlib.compressobj(9)
    idat = b"".join(packer.compress(row * 500) for _ in range(height // 500))
    idat += packer.compress(row * (height % 500)) + packer.flush()
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0))
            + chunk(b"IDAT", idat) + chunk(b"IEND", b""))


@pytest.fixture
def no_decoding(monkeypatch):
    """Fails the test if Pillow decodes any pixels."""
    from PIL import ImageFile

    def load(self):
        raise AssertionError("the picture was decoded")

    monkeypatch.setattr(ImageFile.ImageFile, "load", load)


def test_a_large_picture_is_refused_before_it_is_decoded(tmp_path, no_decoding):
    data = _bilevel_png(8000, 6000)  # 48 megapixels, 14 kB
    (tmp_path / "scan.png").write_bytes(data)
    assert 8000 * 6000 > MAX_PIXELS and len(data) < 100_000
    with pytest.raises(ImageError, match=r"scan.png: picture too large .*8000x6000.* limit is 40 "
                                         r"megapixels: shrink it"):
        load_digit(tmp_path / "scan.png")
    with pytest.raises(ImageError, match=r"upload: picture too large .*8000x6000"):
        load_digit(data)


def test_a_decompression_bomb_is_an_error_not_a_traceback(tmp_path, no_decoding):
    # 225 megapixels: Pillow's own check refuses it in Image.open (DecompressionBombError).
    (tmp_path / "bomb.png").write_bytes(_bilevel_png(15000, 15000))
    with pytest.raises(ImageError, match=r"bomb.png: picture too large to read \(225 megapixels\); "
                                         r"the limit is 40 megapixels: shrink it"):
        load_digit(tmp_path / "bomb.png")


def test_bytes_are_read_like_the_file(tmp_path):
    _drawn_one().save(tmp_path / "one.png")
    data = (tmp_path / "one.png").read_bytes()
    np.testing.assert_array_equal(load_digit(data), load_digit(tmp_path / "one.png"))
    with pytest.raises(ImageError, match="upload: not an image"):
        load_digit(b"not a picture")
    buffer = io.BytesIO()
    Image.new("L", (50, 50), 240).save(buffer, "PNG")
    with pytest.raises(ImageError, match="photo.png: no digit found"):
        load_digit(buffer.getvalue(), name="photo.png")
