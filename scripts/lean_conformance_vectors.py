"""Make the lean copy of the mPLUG-Owl2 conformance vectors that ships in tests/fixtures/mplug_owl2_tiny/.

    python scripts/lean_conformance_vectors.py ORIGINAL_FOLDER                  # writes tests/fixtures/mplug_owl2_tiny
    python scripts/lean_conformance_vectors.py ORIGINAL_FOLDER --out /tmp/lean  # somewhere else, e.g. to compare

ORIGINAL_FOLDER holds the vectors as the reference code wrote them (vectors.safetensors, 8.3 MB, plus
config.json, model.safetensors, preprocessor_config.json and test_image.png). Nearly all of those 8.3 MB are
four images: the three processed 448 x 448 float32 images and the test image again as a tensor. They are stored
here without loss of what the tests compare:

* each processed image is (uint8 picture / 255 - mean) / std with the preprocessor's CLIP mean and std, so the
  uint8 picture is kept as a PNG (`image_processed_<aspect>.png`) and `load_vectors` rebuilds the float32
  tensor; this script refuses to write unless every rebuilt value is within REBUILD_TOL of the original and
  records the largest difference in the metadata;
* the test image tensor equals test_image.png's pixels, so the metadata keeps the sha256 of its bytes instead.

Every other tensor (inputs, logits, gradient, intermediates, masks) is copied bit for bit, and the metadata of
the original is kept, with the sha256 of the file it was derived from. The other four files are copied
unchanged. Deterministic: the same original gives the same PNGs and the same tensors and metadata (the
safetensors writer may list the metadata entries in another order in the file's header).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from safetensors import safe_open
from safetensors.torch import load_file, save_file

ASPECTS = ("pad", "resize", "plain")
COPIED_FILES = ("config.json", "model.safetensors", "preprocessor_config.json", "test_image.png")
# The rebuilt float32 images may differ from the reference's by float32 rounding only (the tests allow 1e-6).
REBUILD_TOL = 3e-7
DEFAULT_OUT = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "mplug_owl2_tiny"


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def clip_statistics(folder: Path) -> tuple[np.ndarray, np.ndarray]:
    """The mean and std of preprocessor_config.json, shaped [3, 1, 1] for CHW images."""
    config = json.loads((folder / "preprocessor_config.json").read_text())
    return (np.asarray(config["image_mean"], dtype=np.float64)[:, None, None],
            np.asarray(config["image_std"], dtype=np.float64)[:, None, None])


def normalise(picture: np.ndarray, folder: Path) -> torch.Tensor:
    """[1, 3, H, W] float32 model input from an HWC uint8 picture, as the reference's processor computes it."""
    mean, std = clip_statistics(folder)
    chw = picture.transpose(2, 0, 1).astype(np.float64) / 255.0
    return torch.from_numpy(np.ascontiguousarray((chw - mean) / std, dtype=np.float32)).unsqueeze(0)


def unnormalise(processed: torch.Tensor, folder: Path) -> np.ndarray:
    """The HWC uint8 picture behind a [1, 3, H, W] processed image (exact integers up to float32 rounding)."""
    mean, std = clip_statistics(folder)
    levels = (processed[0].double().numpy() * std + mean) * 255.0
    rounded = np.rint(levels)
    if np.abs(levels - rounded).max() > 1e-3 or rounded.min() < 0 or rounded.max() > 255:
        raise ValueError("a processed image is not a normalised uint8 picture; it cannot be stored as a PNG")
    return rounded.astype(np.uint8).transpose(1, 2, 0)


def load_vectors(folder: str | Path) -> dict[str, torch.Tensor]:
    """The lean vectors with the processed images rebuilt, under the original tensor names (not test_image_uint8:
    compare test_image.png with `metadata(folder)["test_image_uint8_sha256"]`)."""
    folder = Path(folder)
    vectors = load_file(str(folder / "vectors.safetensors"))
    for aspect in ASPECTS:
        picture = np.asarray(Image.open(folder / f"image_processed_{aspect}.png").convert("RGB"))
        vectors[f"image_processed_{aspect}"] = normalise(picture, folder)
    return vectors


def metadata(folder: str | Path) -> dict[str, str]:
    with safe_open(str(Path(folder) / "vectors.safetensors"), "pt") as handle:
        return handle.metadata()


def derive(original: Path, out: Path) -> dict[str, float]:
    """Write the lean set for `original` into `out`; returns the largest rebuild difference per aspect."""
    source = original / "vectors.safetensors"
    tensors = load_file(str(source))
    with safe_open(str(source), "pt") as handle:
        meta = dict(handle.metadata() or {})
    out.mkdir(parents=True, exist_ok=True)
    for name in COPIED_FILES:
        shutil.copyfile(original / name, out / name)

    differences = {}
    for aspect in ASPECTS:
        processed = tensors.pop(f"image_processed_{aspect}")
        picture = unnormalise(processed, original)
        differences[aspect] = (normalise(picture, original) - processed).abs().max().item()
        if differences[aspect] > REBUILD_TOL:
            raise ValueError(f"image_processed_{aspect}: rebuilt within {differences[aspect]:.2e}, "
                             f"more than {REBUILD_TOL:.0e}; not written")
        Image.fromarray(picture).save(out / f"image_processed_{aspect}.png", optimize=False, compress_level=9)

    test_image = tensors.pop("test_image_uint8").numpy()
    if not np.array_equal(np.asarray(Image.open(original / "test_image.png").convert("RGB")), test_image):
        raise ValueError("test_image.png does not hold the pixels of test_image_uint8")
    meta.update({
        "derived_from_sha256": sha256_hex(source.read_bytes()),
        "derived_by": "scripts/lean_conformance_vectors.py",
        "test_image_uint8_sha256": sha256_hex(np.ascontiguousarray(test_image).tobytes()),
        "processed_images_rebuild_max_diff": json.dumps({k: float(f"{v:.3e}") for k, v in differences.items()}),
    })
    save_file(dict(sorted(tensors.items())), str(out / "vectors.safetensors"), metadata=dict(sorted(meta.items())))
    return differences


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("original", type=Path, help="folder with the reference's vectors.safetensors and files")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"where to write (default {DEFAULT_OUT})")
    args = parser.parse_args(argv)
    if not (args.original / "vectors.safetensors").is_file():
        parser.error(f"{args.original / 'vectors.safetensors'} not found: give the folder of the original vectors")
    differences = derive(args.original, args.out)
    for aspect, difference in differences.items():
        print(f"image_processed_{aspect}: rebuilt within {difference:.2e}")
    print(f"written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
