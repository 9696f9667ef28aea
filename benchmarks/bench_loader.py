"""Loader throughput (images/s) with and without the prepared-image cache, on a generated KADID-style
set of KADID-sized images (512x384 PNG) in a temporary folder.

    python benchmarks/bench_loader.py                 # 448 px, batch 32, auto workers
    python benchmarks/bench_loader.py --image-size 224 --workers 1 --n-refs 4
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from vpkit.data import available_cpus, default_num_workers, ensure_cache, load_table, make_loader
from vpkit.data.synth import DEMO_DISTORTIONS, generate


def epoch_rate(loader, epochs: int) -> tuple[float, float]:
    """(images/s over the first epoch including worker start-up, images/s over the later epochs)."""
    rates = []
    for _ in range(epochs):
        start, seen = time.perf_counter(), 0
        for batch in loader:
            seen += len(batch["name"])
        rates.append(seen / (time.perf_counter() - start))
    later = rates[1:] or rates
    return rates[0], sum(later) / len(later)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n-refs", type=int, default=8, help=f"references; images = refs x {len(DEMO_DISTORTIONS)} types x 5 levels")
    parser.add_argument("--image-size", type=int, default=448)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--workers", type=int, default=None, help="default: from the CPU count")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--method", default="resize_crop", choices=("resize_crop", "stretch", "pad"))
    args = parser.parse_args()
    workers = default_num_workers() if args.workers is None else args.workers
    print(f"cpus available {available_cpus()}, loader workers {workers}, image size {args.image_size}, "
          f"batch {args.batch_size}, method {args.method}")
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        generate(tmp, n_refs=args.n_refs, distortions=DEMO_DISTORTIONS, size=(512, 384), include_photos=False,
                 progress=False)
        table = load_table("kadid", tmp, split="paper")
        print(f"generated {len(table)} images of 512x384 in {time.perf_counter() - start:.1f} s")

        def loader(cache_dir):
            return make_loader(table, "all", args.image_size, args.batch_size, train=True, method=args.method,
                               cache_dir=cache_dir, num_workers=workers, progress=False)

        first, steady = epoch_rate(loader(None), args.epochs)
        print(f"no cache:   {steady:8.1f} images/s (first epoch with worker start-up {first:.1f})")
        cache_dir = Path(tmp) / "cache"
        start = time.perf_counter()
        ensure_cache(table, args.image_size, args.method, cache_dir, num_workers=workers, progress=False)
        built = time.perf_counter() - start
        print(f"cache build: {built:.1f} s ({len(table) / built:.1f} images/s, once per dataset+size+method)")
        first, steady = epoch_rate(loader(cache_dir), args.epochs)
        print(f"with cache: {steady:8.1f} images/s (first epoch with worker start-up {first:.1f})")


if __name__ == "__main__":
    main()
