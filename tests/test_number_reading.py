"""numbers.segment/read_number on numbers drawn in the test: apart, touching, a detached part."""

import io

import numpy as np
import pytest
from PIL import Image, ImageDraw

from cnn_mnist.analysis.images import ImageError
from cnn_mnist.analysis.number_reading import read_number

# Digits drawn with strokes in a 50x70 box (x, y offsets); the 5's top bar is detached.
STROKES = {
    "1": [[(25, 0), (25, 70)]],
    "7": [[(0, 0), (50, 0), (15, 70)]],
    "4": [[(35, 0), (0, 48), (50, 48)], [(38, 20), (38, 70)]],
    "5": [[(8, 0), (50, 0)], [(6, 12), (4, 34), (45, 40), (45, 65), (0, 68)]],
    "2": [[(0, 20), (20, 0), (45, 5), (50, 25), (0, 80), (55, 80)]],
    "0": [[(25, 0), (50, 20), (50, 60), (25, 80), (0, 60), (0, 20), (25, 0)]],
    "6": [[(45, 0), (10, 30), (0, 60), (20, 80), (45, 70), (45, 50), (20, 45), (5, 55)]],
}


def _number(text, gap=30, blur=False):
    image = Image.new("L", (60 + len(text) * (50 + gap), 130), 240)
    draw = ImageDraw.Draw(image)
    x = 30
    for ch in text:
        for line in STROKES[ch]:
            draw.line([(x + a, 30 + b) for a, b in line], fill=20, width=9, joint="curve")
        x += 50 + gap
    buffer = io.BytesIO()
    image.save(buffer, "JPEG" if blur else "PNG", quality=40)
    return buffer.getvalue()


@pytest.mark.parametrize("text", ["17", "4751", "1174"])
@pytest.mark.parametrize("jpeg", [False, True])
def test_digits_apart_are_found_left_to_right(text, jpeg):
    found = read_number(_number(text, blur=jpeg))
    assert len(found) == len(text)
    lefts = [d.box[0] for d in found]
    assert lefts == sorted(lefts)
    for d in found:
        assert d.digit.shape == (28, 28) and d.digit.max() == pytest.approx(1.0)


def test_a_detached_part_stays_with_its_digit():
    found = read_number(_number("55"))
    assert len(found) == 2  # each 5's top bar is its own stroke, merged by the columns it shares


def test_touching_digits_are_split():
    found = read_number(_number("44", gap=-12))  # the strokes overlap
    assert len(found) == 2
    assert found[0].box[2] <= found[1].box[2]


def test_a_blank_picture_has_no_number():
    buffer = io.BytesIO()
    Image.new("L", (300, 100), 240).save(buffer, "PNG")
    with pytest.raises(ImageError, match="no digit found"):
        read_number(buffer.getvalue())


def _row(parts, size=(420, 140)):
    """A picture with strokes: each part a list of polylines (absolute coordinates)."""
    image = Image.new("L", size, 240)
    draw = ImageDraw.Draw(image)
    for lines in parts:
        for line in lines:
            draw.line(line, fill=20, width=9, joint="curve")
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def test_a_short_mark_apart_from_its_digit_joins_it_and_is_never_a_digit():
    # A 7 whose bar was written apart, to its right (it shares few of the stem's columns), then
    # a 1: the bar is too short to be a digit of its own and joins its nearer neighbour, the 7.
    seven = [[(30, 30), (60, 30)], [(85, 30), (50, 110)]]
    one = [[(200, 30), (200, 110)]]
    found = read_number(_row([seven, one]))
    assert len(found) == 2
    assert found[0].box[0] <= 35 and found[0].box[2] >= 85  # the 7's box takes in its bar


def test_touching_digits_set_apart_in_height_are_split():
    # Two 4s joined by a pen stroke, the second written 35 pixels lower, then two 1s: the pair
    # is taller than any digit, so the row's height is the digits' own (the median), by which
    # the pair is two digits wide; by the pair's own height it would pass for one.
    def four(x, y):
        return [[(x + 35, y), (x, y + 48), (x + 50, y + 48)], [(x + 38, y + 20), (x + 38, y + 70)]]

    joined = [[(70, 68), (84, 72)]]
    ones = [[(260, 40), (260, 110)]], [[(330, 40), (330, 110)]]
    found = read_number(_row([four(20, 20), four(55, 55), joined, *ones], size=(420, 160)))
    assert len(found) == 4
    assert [d.box[0] for d in found] == sorted(d.box[0] for d in found)


def _by_shape(whole_sure: bool):
    """A stand-in for the model, for segmentation's own rule: a digit less than 0.8 as wide as
    tall (SEVEN_ONE's 7 alone is 0.74, its 1 0.1, the two 0.84) is read surely (0.99); a wider
    one surely only if `whole_sure`."""

    def classify(digits):
        rows = []
        for digit in digits:
            cols, ys = (
                np.nonzero(digit.max(axis=0) > 0.2)[0],
                np.nonzero(digit.max(axis=1) > 0.2)[0],
            )
            narrow = (cols[-1] - cols[0]) < 0.8 * (ys[-1] - ys[0])
            rows.append(
                np.full(10, 0.001) + np.eye(10)[0] * (0.99 if narrow or whole_sure else 0.5)
            )
        return np.array(rows)

    return classify


# A 7 and a 1 touching the end of its bar: one stroke, a single digit wide.
SEVEN_ONE = [[[(30, 30), (90, 30), (50, 110)]], [[(97, 28), (92, 110)]]]


def test_a_one_touching_its_neighbour_is_split_where_two_read_more_surely():
    picture = _row(SEVEN_ONE, size=(200, 140))
    assert len(read_number(picture)) == 1  # without a classifier: one part, one digit wide
    found = read_number(picture, classify=_by_shape(whole_sure=False))
    assert len(found) == 2
    seven, one = (d.box for d in found)
    assert seven[0] <= 30 and seven[2] <= 98 and one[0] >= 60 and one[2] >= 100
    # The model reading the whole more surely (0.99 against 0.99 x 0.99) keeps it one digit.
    assert len(read_number(picture, classify=_by_shape(whole_sure=True))) == 1


def test_a_zero_is_never_cut_however_sure_its_halves():
    # Every line through a 0 crosses two strokes: not a place two digits touch.
    image = Image.new("L", (200, 160), 240)
    ImageDraw.Draw(image).ellipse((40, 20, 140, 140), outline=20, width=9)
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    assert len(read_number(buffer.getvalue(), classify=_by_shape(whole_sure=False))) == 1


def test_a_stray_mark_far_from_the_digits_is_left_out():
    # A short smudge in the page's corner, far from the 7 and the 1, is not a digit (it had
    # joined its nearer neighbour and made a wide part that split into an extra digit).
    seven, one = [[(60, 40), (110, 40), (75, 120)]], [[(170, 40), (170, 120)]]
    smudge = [[(480, 150), (530, 150)]]
    found = read_number(_row([seven, one, smudge], size=(560, 170)))
    assert len(found) == 2 and found[1].box[2] < 200


def test_a_digit_a_little_wider_than_tall_is_one_where_the_model_reads_it_so():
    # A 1 and a 0 written wide (1.2 x the row's height): by the strokes alone the 0 may be two
    # touching digits; the model reading it more surely whole (0.99 against 0.99 x 0.99) keeps
    # it one, and reading it unsurely (0.5) cuts it.
    image = Image.new("L", (320, 160), 240)
    draw = ImageDraw.Draw(image)
    draw.line([(50, 30), (50, 130)], fill=20, width=9)
    draw.ellipse((110, 30, 230, 130), outline=20, width=9)
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    picture = buffer.getvalue()
    assert len(read_number(picture)) == 3
    assert len(read_number(picture, classify=_by_shape(whole_sure=True))) == 2
    assert len(read_number(picture, classify=_by_shape(whole_sure=False))) == 3


def test_a_part_about_two_digits_wide_holds_three_where_the_model_reads_three_better():
    # Three 0s, each half as wide as tall, joined by a short stroke at mid-height: one part 1.8x
    # as wide as tall, which by its width alone is two digits. Cut in three, each third is a
    # digit the stand-in reads surely (narrow); cut in two, one half holds two 0s (read at 0.5).
    image = Image.new("L", (260, 160), 240)
    draw = ImageDraw.Draw(image)
    for left in (30, 95, 160):
        draw.ellipse((left, 30, left + 50, 130), outline=20, width=9)
    draw.line([(75, 80), (100, 80)], fill=20, width=9)
    draw.line([(140, 80), (165, 80)], fill=20, width=9)
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    picture = buffer.getvalue()
    assert len(read_number(picture)) == 2
    found = read_number(picture, classify=_by_shape(whole_sure=False))
    assert len(found) == 3
    assert 75 <= found[1].box[0] <= 100 and 140 <= found[2].box[0] <= 165  # cut in the joins
    # Read as surely in two (0.99 x 0.99 against 0.99 x 0.99 x 0.99), it stays two.
    assert len(read_number(picture, classify=_by_shape(whole_sure=True))) == 2


def _reads_top_stroke_right(digits):
    """A stand-in for the model that reads surely (0.99) a digit whose topmost ink lies right of
    its middle, as a 5's bar does, and other digits unsurely (0.5)."""
    rows = []
    for digit in digits:
        inked = np.nonzero(digit.max(axis=1) > 0.2)[0]
        top = np.nonzero(digit[inked[0]] > 0.2)[0]
        cols = np.nonzero(digit.max(axis=0) > 0.2)[0]
        sure = top.mean() >= (cols[0] + cols[-1]) / 2 - 1
        rows.append(np.full(10, 0.001) + np.eye(10)[5] * (0.99 if sure else 0.5))
    return np.array(rows)


def test_a_short_mark_between_two_digits_joins_the_one_the_model_reads_better():
    # A 5 whose bar was written apart and further right, nearer the next digit (a 1) than the
    # 5's own body by their columns: the strokes alone join the bar to the 1; the model reading
    # a 5 with its bar more surely joins it to the 5.
    body = [[(36, 60), (34, 88), (75, 94), (75, 124), (30, 128)]]
    bar = [[(90, 34), (128, 34)]]
    one = [[(138, 30), (138, 130)]]
    picture = _row([body, bar, one], size=(200, 160))
    by_columns = read_number(picture)
    assert len(by_columns) == 2 and by_columns[1].box[0] <= 90  # the bar went to the 1
    found = read_number(picture, classify=_reads_top_stroke_right)
    assert len(found) == 2
    assert found[0].box[2] >= 128 and found[1].box[0] >= 130  # the 5 took in its bar


@pytest.mark.parametrize("text, angle, pen", [("4751", 5, 10), ("4751", 8, 10), ("2026", 4, 3)])
def test_a_photo_of_ruled_paper_turned_with_its_margin_line_leaving_at_the_side(text, angle, pen):
    # A number in pen on ruled paper with a margin line, photographed turned and lit from one
    # side: the margin line leaves the picture at its side, and the light's fall leaves a band
    # at the other; the margin is found square to the ruled lines (it was read as extra 1s).
    # A fine pen's strokes pulled the tilt a tenth of a degree off, and the lines through the
    # digits, straddling two rows, stayed ("2026" was read as 10 digits): the tilt is settled by
    # the lines it finds.
    image = Image.new("RGB", (1200, 900), (250, 250, 244))
    draw = ImageDraw.Draw(image)
    for y in range(40, 900, 60):
        draw.line([(0, y), (1200, y)], fill=(150, 180, 225), width=2)
    draw.line([(120, 0), (120, 900)], fill=(230, 120, 120), width=2)
    for k, ch in enumerate(text):
        for line in STROKES[ch]:
            points = [(380 + 120 * k + 1.6 * a, 380 + 1.6 * b) for a, b in line]
            draw.line(points, fill=(30, 50, 160), width=pen, joint="curve")
    turned = image.rotate(angle, resample=Image.Resampling.BICUBIC, fillcolor=(250, 250, 244))
    lit = np.asarray(turned, np.float32) * np.linspace(1, 0.45, 1200)[None, :, None]
    photo = Image.fromarray(lit.astype(np.uint8)).crop((100, 100, 1100, 800))
    buffer = io.BytesIO()
    photo.save(buffer, "JPEG", quality=45)
    assert len(read_number(buffer.getvalue())) == 4


def test_a_large_photo_gives_its_boxes_in_its_own_pixels():
    # 2,400 pixels wide, over MAX_SIDE: read shrunk, but the boxes are where the digits are in
    # the picture the user has (they were in the shrunk picture's pixels, 0.43x these).
    image = Image.new("L", (2400, 700), 240)
    draw = ImageDraw.Draw(image)
    draw.line([(600, 150), (600, 550)], fill=20, width=24)
    draw.line([(1400, 150), (1700, 150), (1500, 550)], fill=20, width=24, joint="curve")
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    one, seven = (d.box for d in read_number(buffer.getvalue()))
    assert 570 <= one[0] <= 590 and 610 <= one[2] <= 630 and 140 <= one[1] <= 152
    assert 1385 <= seven[0] <= 1402 and 1705 <= seven[2] <= 1725 and 550 <= seven[3] <= 575
