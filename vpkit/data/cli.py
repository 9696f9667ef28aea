"""`vpkit data check ROOT`, `vpkit data download NAMES --to ROOT` and `vpkit data synth OUT`. `register(subparsers)` adds the `data` command to
vpkit's CLI; `python -m vpkit.data.cli ...` runs it on its own."""
from __future__ import annotations

import argparse
import sys

from .layouts import LAYOUTS
from .specs import SPECS
from .splits import SPLIT_KINDS
from .table import COUNT_CHECKS


def register(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add `data` with its `check` and `synth` sub-commands; each sets `handler` (what vpkit's main CLI calls)
    to a function of the namespace returning the exit code."""
    data = subparsers.add_parser("data", help="check datasets on disk; generate the synthetic demo set")
    commands = data.add_subparsers(dest="data_command", metavar="{check,download,synth}", required=True)

    check = commands.add_parser("check", help="validate datasets under ROOT and report layout, folders, splits")
    check.add_argument("root", help="data root holding kadid10k/, koniq10k/, agiqa3k/ (or pyiqa's datasets/)")
    check.add_argument("--dataset", action="append", choices=sorted(SPECS),
                       help="check only this dataset (repeatable); an absent one is then an error")
    check.add_argument("--layout", default="auto", choices=("auto", *LAYOUTS))
    check.add_argument("--split-scheme", default="paper", choices=SPLIT_KINDS, help="train/val/test split scheme")
    check.add_argument("--seed", type=int, default=42, help="seed of a generated split")
    check.add_argument("--counts", default="warn", choices=COUNT_CHECKS,
                       help="when the image count differs from the full dataset")
    check.add_argument("--all-errors", action="store_true", help="list every problem, not just the first")
    check.add_argument("--no-decode", action="store_true", help="do not open every image (faster)")
    check.add_argument("--quiet", action="store_true", help="no progress bars")
    check.set_defaults(handler=run_check)

    download = commands.add_parser(
        "download", help="fetch the paper's dataset archives and split files and unpack them into ROOT")
    download.add_argument("names", nargs="+", metavar="NAME", help="kadid10k, koniq10k and/or agiqa3k")
    download.add_argument("--to", required=True, metavar="ROOT", help="the data root to unpack into")
    download.add_argument("--force", action="store_true",
                          help="replace a dataset folder that vpkit did not unpack, or one from a different archive")
    download.add_argument("--revision", help="revision of the Hub dataset chaofengc/IQA-PyTorch-Datasets")
    download.set_defaults(func=run_download, handler=run_download)

    synth = commands.add_parser("synth", help="generate the synthetic KADID-style demo set in OUT/kadid10k/")
    synth.add_argument("out", help="output root; the set is written to OUT/kadid10k/")
    synth.add_argument("--small", action="store_true", help="16 references, 400 images (for CI and quick tries)")
    synth.add_argument("--n-refs", type=int, help="number of reference images (default 160)")
    synth.add_argument("--distortions", default="demo",
                       help="demo (default: the 5 types the tiny model never saw), pretrain (the 4 structural types it learnt), all, or names a,b,c")
    synth.add_argument("--levels", default="1,2,3,4,5", help="comma-separated levels 1..5")
    synth.add_argument("--size", default="288x224", help="W x H of every image (default 288x224)")
    synth.add_argument("--seed", type=int, default=0, help="distortion randomness and split")
    synth.add_argument("--reference-seed", type=int, help="seed of the reference images (default: --seed)")
    synth.add_argument("--no-photos", action="store_true", help="procedural references only")
    synth.add_argument("--workers", type=int, help="processes (default: up to 4)")
    synth.add_argument("--quiet", action="store_true", help="no progress bar")
    synth.set_defaults(handler=run_synth)
    return data


def run_check(args: argparse.Namespace) -> int:
    from .check import check_datasets

    return check_datasets(args.root, args.dataset, layout=args.layout, split=args.split_scheme, seed=args.seed,
                          count_check=args.counts, all_errors=args.all_errors, decode_images=not args.no_decode,
                          progress=not args.quiet)


def run_download(args: argparse.Namespace) -> int:
    from .download import DOWNLOAD_RECORD, download

    download(args.names, args.to, force=args.force, revision=args.revision)
    print(f"recorded in {args.to}/{DOWNLOAD_RECORD}; check with: vpkit data check {args.to}")
    return 0


def run_synth(args: argparse.Namespace) -> int:
    from .synth import DEFAULT_N_REFS, SMALL_N_REFS, generate

    try:
        n_refs = args.n_refs or (SMALL_N_REFS if args.small else DEFAULT_N_REFS)
        path = generate(args.out, n_refs=n_refs, distortions=_distortion_names(args.distortions),
                        levels=tuple(int(v) for v in args.levels.split(",") if v.strip()),
                        size=_parse_size(args.size), seed=args.seed, reference_seed=args.reference_seed,
                        include_photos=not args.no_photos, progress=not args.quiet, workers=args.workers)
    except (ValueError, FileExistsError, TypeError) as exc:
        print(f"vpkit data synth: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {path} (scores are synthetic, not human opinions; see {path / 'README.md'})")
    return 0


def _distortion_names(spec: str) -> list[str] | None:
    from .synth import DEMO_DISTORTIONS, PRETRAIN_DISTORTIONS

    presets = {"demo": list(DEMO_DISTORTIONS), "pretrain": list(PRETRAIN_DISTORTIONS), "all": None}
    if spec in presets:
        return presets[spec]
    return [name.strip() for name in spec.split(",") if name.strip()]


def _parse_size(text: str) -> tuple[int, int]:
    try:
        width, height = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise ValueError(f"--size must look like 288x224 (W x H), got {text!r}") from None
    return width, height


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m vpkit.data.cli", description="vpkit dataset tools")
    register(parser.add_subparsers(dest="command", metavar="data", required=True))
    args = parser.parse_args(argv)
    return args.handler(args)


if __name__ == "__main__":
    sys.exit(main())
