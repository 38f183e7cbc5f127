"""Images per second of the image pipeline (decode + transform), with and without the decoded cache, 0 and 2 workers.

Generates ``--images`` JPEGs of 256×256 (random smooth colours, quality 90) in a temporary folder, lists them as
the train split of :func:`fairdistill.data.images.image_splits` (image_size 224, resize 256, ``crop-flip``
augmentation, batch 64) and times one training pass (``BatchLoader`` with an ``EpochShuffleSampler``) for each
(cache, workers) pair, ``--repeats`` times (median kept). The cache's one-off build is timed separately.
``torch.set_num_threads(1)`` in the main process.

    .venv/bin/python benchmarks/image_pipeline.py [--images 2000] [--repeats 2]

Writes ``benchmarks/results/image_pipeline.json`` (or ``--output``). Nothing is asserted: the figures are reported.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from fairdistill.data.core import BatchLoader, DatasetInfo, label_attr_groups
from fairdistill.data.images import ImageOptions, ImageRecord, image_splits
from fairdistill.train.engine import EpochShuffleSampler
from records import header, store

INFO = DatasetInfo("bench", 2, ("0", "1"), ("0", "1"), label_attr_groups(("0", "1"), ("0", "1")), "image")


def make_images(folder: Path, n: int) -> list[ImageRecord]:
    rng = np.random.default_rng(0)
    grid = np.linspace(0, 1, 256)
    records = []
    for k in range(n):
        a, b, c = rng.uniform(0, 255, 3)
        pixels = np.stack([a * grid[:, None] + 0 * grid, b * grid[None, :] + 0 * grid[:, None], np.full((256, 256), c)])
        noise = rng.integers(0, 30, (3, 256, 256))
        image = (pixels + noise).clip(0, 255).astype(np.uint8).transpose(1, 2, 0)
        Image.fromarray(image).save(folder / f"{k}.jpg", quality=90)
        records.append(ImageRecord(f"{k}.jpg", k % 2, (k // 2) % 2))
    return records


def one_pass(split, batch_size: int) -> float:
    sampler = EpochShuffleSampler(len(split), seed=0)
    start = time.perf_counter()
    n = sum(len(batch) for batch in BatchLoader(split, batch_size, sampler))
    return n / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument(
        "--output", type=Path, default=Path(__file__).resolve().parent / "results" / "image_pipeline.json"
    )
    args = parser.parse_args()
    torch.set_num_threads(1)
    results: dict[str, object] = {}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "images"
        folder.mkdir()
        os.environ["FAIRDISTILL_CACHE"] = str(Path(tmp) / "cache")
        records = make_images(folder, args.images)
        per_split = {"train": records, "val": records[:64], "test": records[:64]}
        for cache in (False, True):
            for workers in (0, 2):
                options = ImageOptions(train_augment="crop-flip", cache=cache, workers=workers)
                start = time.perf_counter()
                splits = image_splits(per_split, folder, options, INFO)
                load_s = time.perf_counter() - start
                rates = [one_pass(splits.train, args.batch_size) for _ in range(args.repeats)]
                key = f"{'cache' if cache else 'no_cache'}_workers{workers}"
                results[key] = {
                    "images_per_s": round(statistics.median(rates), 1),
                    "passes": [round(r, 1) for r in rates],
                    "load_s": round(load_s, 2),
                }
                print(key, results[key], flush=True)
    out = {
        **header("image_pipeline"),
        "setup": {
            "images": args.images,
            "source": "generated 256x256 JPEG, quality 90",
            "image_size": 224,
            "resize": 256,
            "train_augment": "crop-flip",
            "batch_size": args.batch_size,
            "note": "load_s of a cache run includes building the cache (decoding every image once) when it is "
            "first made; the workers-2 cache run reuses the entry built by the workers-0 one",
        },
        "results": results,
    }
    store(args.output, out)
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
