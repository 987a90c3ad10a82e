"""Benchmark: `cnn serve` under load: POST /api/predict from concurrent clients on loopback.

    python bench/serve.py [--model M.h5] [--requests 1000] [--clients 8] [--soak 5000]

Starts `cnn serve` as its own process (so its memory is its own), sends a drawn digit (a
280x280 PNG like the page's pad; not an MNIST digit) from --clients client processes, each on
one keep-alive connection, and prints requests per second, latency percentiles, errors and the
server's resident memory: after start-up (model loaded), after the measured requests and, with
--soak N, after each 1,000 of N more (is it flat? The first ~2,000 requests grow malloc's
per-thread arenas; after that it should not grow). The clients share the machine's cores with
the server, as a browser on the same machine would. Prints the CPU, its cores and the load
average.
"""

from __future__ import annotations

import argparse
import http.client
import io
import multiprocessing
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

from run import cpu_name  # bench/run.py, beside this file

ROOT = Path(__file__).resolve().parent.parent
TARGET_P99_MS = 50.0
FLAT_MB = 5.0  # growth over the soak that still counts as flat
SOAK_STEP = 1000  # the first ~2,000 requests grow malloc's per-thread arenas, then it levels off


def drawn_digit() -> bytes:
    """A "3" drawn with lines, dark on white, as the page's pad sends it."""
    from PIL import Image, ImageDraw

    image = Image.new("RGB", (280, 280), "white")
    draw = ImageDraw.Draw(image)
    draw.line(
        [(90, 60), (180, 60), (130, 130), (190, 180), (140, 230), (85, 215)],
        fill="black",
        width=20,
        joint="curve",
    )
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def rss_mb(pid: int) -> float:
    text = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"VmRSS:\s+(\d+) kB", text).group(1)) / 1024


def cpu_seconds(pid: int) -> float:
    """User + system CPU time the process has used."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def start_server(model: str) -> tuple[subprocess.Popen, int]:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    process = subprocess.Popen(
        [sys.executable, "-m", "cnn_mnist", "serve", "--model", model, "--port", "0"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    line = process.stdout.readline()
    found = re.search(r"http://[^:]+:(\d+)/", line)
    if not found:
        process.kill()
        sys.exit(f"cnn serve did not start: {line}{process.stderr.read()}")
    return process, int(found.group(1))


def client(job: tuple[int, bytes, int]) -> tuple[list[float], int]:
    """One client: `count` predictions, one after another, on one keep-alive connection."""
    port, picture, count = job
    latencies, errors = [], 0
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    for _ in range(count):
        start = time.perf_counter()
        try:
            connection.request(
                "POST", "/api/predict", body=picture, headers={"Content-Type": "image/png"}
            )
            response = connection.getresponse()
            ok = response.status == 200 and b'"predicted"' in response.read()
        except (OSError, http.client.HTTPException):
            ok = False
            connection.close()
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        latencies.append(time.perf_counter() - start)
        errors += not ok
    connection.close()
    return latencies, errors


def load(
    pool, port: int, picture: bytes, requests: int, clients: int
) -> tuple[list[float], int, float]:
    """`requests` predictions from `clients` client processes at once (like separate browsers;
    threads in one process would measure their own GIL): latencies (s), errors, wall time (s)."""
    shares = [requests // clients + (k < requests % clients) for k in range(clients)]
    began = time.perf_counter()
    done = pool.map(client, [(port, picture, n) for n in shares if n])
    wall = time.perf_counter() - began
    return [t for latencies, _ in done for t in latencies], sum(e for _, e in done), wall


def percentile(values: list[float], q: float) -> float:
    return (
        statistics.quantiles(values, n=100, method="inclusive")[q - 1]
        if len(values) > 1
        else values[0]
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="models/digits_recognition_cnn.h5")
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument(
        "--soak",
        type=int,
        default=0,
        metavar="N",
        help="then N more requests, and the server's memory again",
    )
    args = parser.parse_args()
    if not (ROOT / args.model).is_file() and not Path(args.model).is_file():
        sys.exit(f"no model at {args.model}: train one with `cnn train`, or pass --model")

    picture = drawn_digit()
    process, port = start_server(args.model)
    pool = multiprocessing.get_context("fork").Pool(args.clients)
    try:
        before = rss_mb(process.pid)
        load(pool, port, picture, 2 * args.clients, args.clients)  # warm-up: first calls
        cpu = cpu_seconds(process.pid)
        latencies, errors, wall = load(pool, port, picture, args.requests, args.clients)
        cpu = cpu_seconds(process.pid) - cpu
        after = rss_mb(process.pid)
        soak = None
        if args.soak:  # in steps of 1,000, the memory after each
            series, soak_errors, soak_ms = [], 0, []
            for step in range(0, args.soak, SOAK_STEP):
                step_latencies, step_errors, _ = load(
                    pool, port, picture, min(SOAK_STEP, args.soak - step), args.clients
                )
                series.append(rss_mb(process.pid))
                soak_errors += step_errors
                soak_ms += [t * 1000 for t in step_latencies]
            soak = (series, soak_errors, percentile(soak_ms, 99))
    finally:
        pool.terminate()
        process.terminate()
        process.wait(timeout=30)

    ms = [t * 1000 for t in latencies]
    p99 = percentile(ms, 99)
    print(
        f"CPU: {cpu_name()}, {os.cpu_count()} cores; load average before: "
        f"{' '.join(f'{v:.2f}' for v in os.getloadavg())}"
    )
    print(f"Model: {args.model}; picture: a drawn digit, {len(picture):,}-byte PNG, 280x280\n")
    print(
        "| requests | clients | requests/s | p50 ms | p99 ms | max ms | errors | "
        "server RSS MB: start / after" + (f" / after {args.soak:,} more |" if soak else " |")
    )
    print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    memory = f"{before:.0f} / {after:.0f}" + (f" / {soak[0][-1]:.0f}" if soak else "")
    print(
        f"| {len(ms):,} | {args.clients} | {len(ms) / wall:.0f} | {percentile(ms, 50):.1f} | "
        f"{p99:.1f} | {max(ms):.1f} | {errors} | {memory} |"
    )
    print(
        f"\nServer CPU: {cpu:.2f} s for the {len(ms):,} requests ({cpu / len(ms) * 1000:.1f} ms "
        f"each; {cpu / wall:.0%} of one core); the clients ran on the same cores."
    )
    if soak:
        print(
            f"Soak: {args.soak:,} more requests, {soak[1]} errors, p99 {soak[2]:.1f} ms; server "
            f"RSS MB after each {SOAK_STEP:,}: {', '.join(f'{m:.0f}' for m in soak[0])}"
        )
    met = errors == 0 and p99 <= TARGET_P99_MS
    verdict = "met" if met else "NOT met"
    if soak:
        flat = soak[0][-1] - soak[0][0] <= FLAT_MB and soak[1] == 0
        verdict = "met" if met and flat else "NOT met"
    else:
        verdict += " (memory not checked: add --soak 5000)"
    print(
        f"\nTarget on two cores: 0 errors, p99 <= {TARGET_P99_MS:.0f} ms, memory flat (the "
        f"soak's end within {FLAT_MB:.0f} MB of its first {SOAK_STEP:,}): {verdict}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
