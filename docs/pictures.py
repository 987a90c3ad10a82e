"""Make the documentation's pictures from a real run, with one command:

    python docs/pictures.py [--data DIR] [--keep DIR] [--only confusion|inspect|tensorboard|serve|number]

It trains the lecture's model (`cnn train --seed 1`, one epoch on all of MNIST) in a temporary
folder, then photographs what a user sees: TensorBoard's Scalars and Images tabs, `cnn serve`'s
page with a digit drawn on it with the mouse and with a number ("2026"), `cnn inspect`'s
feature maps of a digit drawn with Pillow (docs/pictures/seven.png, which the tutorial's commands
read too), and `cnn evaluate`'s confusion matrix (a table of counts). No picture shows an MNIST
image: TensorBoard's Images tab is filtered to the kernels and the confusion matrix (its feature
maps are of a test digit). Needs Debian's chromium and chromium-driver, selenium, and MNIST
($CNN_MNIST_DATA or --data). Writes docs/pictures/*.png, each reduced to 256 colours.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from PIL import Image, ImageDraw

DOCS = Path(__file__).resolve().parent
OUT = DOCS / "pictures"
SCREENSHOT = DOCS.parent.parent / "shared" / "tools" / "screenshot"


def cnn(*args: str, cwd: Path, env: dict) -> None:
    print("$ cnn", " ".join(args), flush=True)
    subprocess.run(
        [sys.executable, "-m", "cnn_mnist", *args],
        cwd=cwd,
        env=env,
        check=True,
        stdout=subprocess.DEVNULL,
    )


def drawn_seven(path: Path) -> Path:
    """A 7 drawn with two strokes of a thick pen, dark on white, as on paper."""
    image = Image.new("L", (280, 280), 255)
    draw = ImageDraw.Draw(image)
    draw.line([(70, 64), (205, 58), (196, 80), (128, 232)], fill=20, width=22, joint="curve")
    draw.line([(110, 146), (190, 142)], fill=20, width=18)
    image.save(path)
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(url: str, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(url, timeout=2).read()
            return
        except OSError:
            time.sleep(0.5)
    raise SystemExit(f"{url} did not answer within {seconds:.0f} s")


def small(source: Path, name: str, width: int | None = None) -> Path:
    """Copy a picture into docs/pictures, at most `width` wide, in 256 colours."""
    image = Image.open(source).convert("RGB")
    if width and image.width > width:
        image = image.resize((width, round(image.height * width / image.width)), Image.LANCZOS)
    target = OUT / name
    image.quantize(256, dither=Image.Dither.NONE).save(target, optimize=True)
    print(
        f"  {target.relative_to(DOCS.parent)}: {image.width}x{image.height}, "
        f"{target.stat().st_size // 1024} KB",
        flush=True,
    )
    return target


def tensorboard(work: Path, env: dict) -> None:
    port = free_port()
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tensorboard.main",
            "--logdir",
            str(work / "logs" / "fit"),
            "--port",
            str(port),
            "--host",
            "127.0.0.1",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        base = f"http://127.0.0.1:{port}/"
        wait_for(base + "data/runs")
        time.sleep(5)  # the first reload of the event files
        for tab, name in (
            ("scalars&tagFilter=accuracy%7Closs", "tensorboard-scalars.png"),
            ("images&tagFilter=kernels%7Cconfusion", "tensorboard-images.png"),
        ):
            shot = work / name
            subprocess.run(
                [str(SCREENSHOT), f"{base}#{tab}", str(shot), "1400x900", "15000"],
                check=True,
                stdout=subprocess.DEVNULL,
            )
            small(shot, name, 1100)
    finally:
        server.terminate()
        server.wait()


@contextlib.contextmanager
def _page(work: Path, env: dict):
    """`cnn serve` on a free port with the run's model, and headless Chromium on its page."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "cnn_mnist", "serve", "--port", str(port)],
        cwd=work,
        env=env,
        stdout=subprocess.DEVNULL,
    )
    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or "/usr/bin/chromium"
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--window-size=1280,1000",
        "--hide-scrollbars",
    ):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)
    try:
        wait_for(f"http://127.0.0.1:{port}/api/model", 120)
        driver.get(f"http://127.0.0.1:{port}/")
        WebDriverWait(driver, 30).until(lambda d: d.find_element(By.ID, "model-info").text)
        yield driver, port
    finally:
        driver.quit()
        server.terminate()
        server.wait()


def _draw(driver, pad, strokes: list) -> None:
    """Strokes drawn on the pad with the mouse, each a list of (x, y) in 0-1 of the pad."""
    from selenium.webdriver.common.action_chains import ActionChains

    width, height = pad.rect["width"], pad.rect["height"]
    for stroke in strokes:
        chain = ActionChains(driver, duration=30)
        points = [(int((x - 0.5) * width), int((y - 0.5) * height)) for x, y in stroke]
        chain.move_to_element_with_offset(pad, *points[0]).click_and_hold()
        for x, y in points[1:]:
            chain.move_to_element_with_offset(pad, x, y)
        chain.release().perform()


def serve_page(work: Path, env: dict) -> None:
    """The page with a 2 drawn on the pad with the mouse, and one value clicked."""
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    with _page(work, env) as (driver, port):
        pad = driver.find_element(By.ID, "pad")
        # A 2: the arc over the top, the diagonal down to the left, the base to the right.
        arc = [
            (0.32, 0.3),
            (0.4, 0.2),
            (0.52, 0.17),
            (0.63, 0.22),
            (0.67, 0.33),
            (0.62, 0.45),
            (0.5, 0.57),
            (0.38, 0.7),
            (0.3, 0.8),
            (0.45, 0.8),
            (0.6, 0.79),
            (0.72, 0.8),
        ]
        _draw(driver, pad, [arc])
        WebDriverWait(driver, 60).until(
            lambda d: (
                d.find_element(By.ID, "predicted").text not in ("", "?")
                and len(d.find_elements(By.CSS_SELECTOR, ".map img")) >= 2
            )
        )
        image = driver.find_elements(By.CSS_SELECTOR, ".map img")[0]
        WebDriverWait(driver, 10).until(lambda d: image.size["width"] > 82)
        x, y = _on_the_stroke(
            port, driver.execute_script("return state.answer.input"), image.size["width"]
        )
        driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", image)
        ActionChains(driver).move_to_element_with_offset(
            image, int(x - image.size["width"] / 2), int(y - image.size["height"] / 2)
        ).click().perform()
        WebDriverWait(driver, 30).until(lambda d: d.find_elements(By.CSS_SELECTOR, "#explain pre"))
        driver.set_window_size(1280, 1800)
        driver.execute_script("window.scrollTo(0, 0)")
        time.sleep(1)
        driver.save_screenshot(str(work / "serve.png"))
        small(work / "serve.png", "serve.png", 1100)


def serve_number(work: Path, env: dict) -> None:
    """The page reading a number: "2026" drawn with the mouse, its last digit chosen."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    def two(left):  # the arc over the top, the diagonal down to the left, the base
        return [(left + x, y) for x, y in [(0, 0.3), (0.04, 0.2), (0.1, 0.18), (0.15, 0.25)]] + [
            (left + x, y) for x, y in [(0.13, 0.4), (0, 0.78), (0.16, 0.78)]
        ]

    zero = [(0.42, 0.2), (0.35, 0.35), (0.36, 0.65), (0.42, 0.8), (0.49, 0.65), (0.5, 0.35)]
    six = [(0.9, 0.18), (0.83, 0.45), (0.83, 0.72), (0.88, 0.8), (0.93, 0.7), (0.92, 0.55)]
    with _page(work, env) as (driver, _):
        driver.find_element(By.ID, "number-mode").click()
        pad = driver.find_element(By.ID, "pad")
        _draw(driver, pad, [two(0.12), zero + [(0.42, 0.2)], two(0.58), six + [(0.86, 0.55)]])
        settled = "return !state.inFlight && state.number && state.number.number"
        WebDriverWait(driver, 60).until(lambda d: d.execute_script(settled) == "2026")
        time.sleep(0.5)  # a last request may follow the stroke's end
        WebDriverWait(driver, 60).until(lambda d: d.execute_script(settled) == "2026")
        driver.find_elements(By.CSS_SELECTOR, "#digits li button")[3].click()
        WebDriverWait(driver, 60).until(
            lambda d: len(d.find_elements(By.CSS_SELECTOR, ".map img")) >= 2
        )
        driver.set_window_size(1280, 1400)
        driver.execute_script("window.scrollTo(0, 0)")
        time.sleep(1)
        driver.save_screenshot(str(work / "serve-number.png"))
        small(work / "serve-number.png", "serve-number.png", 1100)


def _on_the_stroke(port: int, digit: list, shown_width: float) -> tuple[float, float]:
    """Where, on the first layer's tiled maps as shown, its most active channel sees the
    digit's brightest 3x3 patch: a value worth working out by hand."""
    import json

    import numpy as np

    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/api/features",
        json.dumps({"input": digit}).encode(),
        method="POST",
    )
    layer = json.loads(urllib.request.urlopen(request, timeout=60).read())["layers"][0]
    pixels = np.asarray(digit)
    sums = [[pixels[r : r + 3, c : c + 3].sum() for c in range(26)] for r in range(26)]
    row, col = np.unravel_index(int(np.argmax(sums)), (26, 26))
    grid, channel = layer["grid"], layer["top_channels"][0]
    (h, w), border = grid["tile"], grid["border"]
    top = border + channel // grid["columns"] * (h + border)
    left = border + channel % grid["columns"] * (w + border)
    scale = shown_width / (border + grid["columns"] * (w + border))
    return (left + col + 0.5) * scale, (top + row + 0.5) * scale


def confusion_matrix(work: Path, env: dict) -> None:
    cnn("evaluate", "--out", "evaluate", cwd=work, env=env)
    small(work / "evaluate" / "confusion_matrix.png", "confusion-matrix.png", 700)


def inspect_maps(work: Path, env: dict) -> None:
    seven = drawn_seven(OUT / "seven.png")  # the tutorial's commands read it too
    cnn("inspect", "--image", str(seven), "--out", "inspect", cwd=work, env=env)
    small(work / "inspect" / "input.png", "inspect-input.png", 400)
    small(work / "inspect" / "layer-0-conv2d.png", "inspect-feature-maps.png", 800)


PARTS = {
    "confusion": confusion_matrix,
    "inspect": inspect_maps,
    "tensorboard": tensorboard,
    "serve": serve_page,
    "number": serve_number,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", help="MNIST folder [default: $CNN_MNIST_DATA]")
    parser.add_argument("--keep", help="Work in this folder and keep it (default: a temporary one)")
    parser.add_argument(
        "--only",
        choices=PARTS,
        action="append",
        help="Make only these pictures (repeatable) [default: all]",
    )
    args = parser.parse_args()
    env = dict(os.environ)
    if args.data:
        env["CNN_MNIST_DATA"] = str(Path(args.data).resolve())
    if not env.get("CNN_MNIST_DATA"):
        raise SystemExit("give MNIST's folder: --data DIR or $CNN_MNIST_DATA")
    work = Path(args.keep).resolve() if args.keep else Path(tempfile.mkdtemp(prefix="pictures-"))
    work.mkdir(parents=True, exist_ok=True)
    OUT.mkdir(exist_ok=True)
    try:
        if not (work / "models" / "digits_recognition_cnn.h5").is_file():  # --keep: once
            cnn("train", "--seed", "1", cwd=work, env=env)
        for part in args.only or PARTS:
            PARTS[part](work, env)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
