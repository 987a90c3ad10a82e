"""float32 against bfloat16 training steps on this CPU, the measurement behind
`compile.mixed_precision: auto` (model.BF16_FLAGS): one process, the two interleaved.

    python bench/dtype.py [--images 15360] [--reps 2] [--config speedrun]

Prints the CPU and its bfloat16 flags, then one line per fit: seconds for one epoch over
`--images` training images (after a short warm-up that traces the step) and accuracy on the
first 2,000 test images.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cnn_mnist.stages.model import BF16_FLAGS, cpu_flags


def cpu_name() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return "unknown CPU"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=15360)
    parser.add_argument("--reps", type=int, default=2)
    parser.add_argument("--config", default=None)
    parser.add_argument("--data", default=None, help="MNIST folder [default: $CNN_MNIST_DATA]")
    args = parser.parse_args()
    flags = sorted(set(BF16_FLAGS) & cpu_flags())
    print(f"CPU: {cpu_name()}; bfloat16 flags: {', '.join(flags) or 'none'}", flush=True)

    from cnn_mnist.core.runtime import import_tensorflow, seed_everything

    import_tensorflow()
    from cnn_mnist.config.load import load_config
    from cnn_mnist.stages.data import load_mnist, prepare
    from cnn_mnist.stages.fit import make_dataset
    from cnn_mnist.stages.model import build_model, compile_model

    config = load_config(args.config)
    data = prepare(load_mnist(args.data), True, args.images, 2000)
    batch = config.training.batch_size
    for rep in range(args.reps):
        for policy in ("float32", "mixed_bfloat16"):
            seed_everything(1)
            model = build_model(config.model, policy)
            compile_model(model, config.compile, total_steps=args.images // batch)
            dataset = make_dataset(
                data.images_train, data.labels_train, batch, True, shuffle=True, seed=1
            )
            model.fit(dataset.take(3), epochs=1, verbose=0)  # traces the step
            start = time.perf_counter()
            model.fit(dataset, epochs=1, verbose=0)
            seconds = time.perf_counter() - start
            accuracy = (model.predict(data.x_test, verbose=0).argmax(1) == data.labels_test).mean()
            print(
                f"rep {rep}  {policy:15s} {seconds:7.2f} s for {args.images:,} images  "
                f"test accuracy (first 2,000) {accuracy:.4f}",
                flush=True,
            )


if __name__ == "__main__":
    main()
