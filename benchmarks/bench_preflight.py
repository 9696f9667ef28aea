"""What fingerprinting the image files costs the pre-flight check (vpkit.preflight.check_images).

The pre-flight reads every image file of a run once, decodes it (PNG chunk CRCs, JPEG at 1/8 scale) and hashes its
bytes (FILE_DIGEST), so a resume on changed pixels is refused. This times, on the same files and after one warm-up
pass (so every variant reads from the page cache):

- decode only: `image_problem(path, full=False)` per file, the check as it was before fingerprints;
- decode + fingerprint: `check_images(paths)`, what a new or resumed run does;
- fingerprint only: `check_images(paths, decode=False)`, what running a finished run's command again does;
- hashing alone: `file_digest` over the bytes already in memory (the pure cost of the digest).

    python -m vpkit data synth --small small && python benchmarks/bench_preflight.py small
    python -m vpkit data synth demo && python benchmarks/bench_preflight.py demo      # the 4,000-image demo set
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from vpkit.data.images import image_problem
from vpkit.preflight import check_images, file_digest


def seconds(function, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        function()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("root", help="a data root: every image file under it is checked")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    paths = sorted(str(path) for path in Path(args.root).rglob("*") if path.suffix.lower() in (".png", ".jpg", ".bmp"))
    if not paths:
        raise SystemExit(f"{args.root}: no image files")
    megabytes = sum(Path(path).stat().st_size for path in paths) / 2**20
    blobs = [Path(path).read_bytes() for path in paths]  # warm-up: every file in the page cache

    def decode_only():
        with ThreadPoolExecutor() as pool:
            list(pool.map(partial(image_problem, full=False), paths))

    rows = {
        "decode only (before)": seconds(decode_only, args.repeats),
        "decode + fingerprint": seconds(lambda: check_images(paths, progress=False), args.repeats),
        "fingerprint only (finished run)": seconds(lambda: check_images(paths, False, decode=False), args.repeats),
        "hashing alone, one thread": seconds(lambda: [file_digest(blob) for blob in blobs], args.repeats),
    }
    print(f"{len(paths)} files, {megabytes:.1f} MiB, median of {args.repeats}")
    for name, value in rows.items():
        print(f"  {name:34s} {value:7.3f} s  ({value / len(paths) * 1e6:6.1f} us/file)")


if __name__ == "__main__":
    main()
