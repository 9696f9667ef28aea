"""scripts/lean_conformance_vectors.py: the shipped conformance vectors are the original's, losslessly for the
tests. The original set is not shipped, so it is rebuilt here in its own format from the shipped one (processed
images as float32 tensors, the test image as a tensor) and derived again."""
from __future__ import annotations

import hashlib
import shutil

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file, save_file


@pytest.fixture(scope="module")
def lean(repo_script):
    return repo_script("scripts/lean_conformance_vectors.py")


def original_format(lean, golden_dir, folder):
    """The shipped set written back in the original's format (as the reference's generator wrote it)."""
    folder.mkdir()
    for name in lean.COPIED_FILES:
        shutil.copyfile(golden_dir / name, folder / name)
    tensors = lean.load_vectors(golden_dir)
    tensors["test_image_uint8"] = torch.from_numpy(np.array(Image.open(golden_dir / "test_image.png").convert("RGB")))
    metadata = {k: v for k, v in lean.metadata(golden_dir).items()
                if k not in ("derived_from_sha256", "derived_by", "test_image_uint8_sha256",
                             "processed_images_rebuild_max_diff")}
    save_file(tensors, str(folder / "vectors.safetensors"), metadata=metadata)
    return tensors


def test_deriving_the_lean_set_again_gives_the_shipped_tensors_and_pictures(lean, golden_dir, tmp_path):
    original = original_format(lean, golden_dir, tmp_path / "original")
    differences = lean.derive(tmp_path / "original", tmp_path / "lean")
    assert max(differences.values()) <= lean.REBUILD_TOL
    shipped, again = load_file(str(golden_dir / "vectors.safetensors")), load_file(str(tmp_path / "lean" / "vectors.safetensors"))
    assert shipped.keys() == again.keys() and all(torch.equal(shipped[k], again[k]) for k in shipped)
    for aspect in lean.ASPECTS:
        name = f"image_processed_{aspect}.png"
        assert np.array_equal(np.asarray(Image.open(golden_dir / name)), np.asarray(Image.open(tmp_path / "lean" / name)))
    meta = lean.metadata(tmp_path / "lean")
    assert meta["test_image_uint8_sha256"] == lean.metadata(golden_dir)["test_image_uint8_sha256"] == hashlib.sha256(
        original["test_image_uint8"].numpy().tobytes()).hexdigest()
    assert meta["reference_commit"] == "0f3068fdb47b77aedc71fc39f5735cd7aa35e8f9"
    assert meta["derived_from_sha256"] == hashlib.sha256((tmp_path / "original" / "vectors.safetensors").read_bytes()).hexdigest()


def test_a_processed_image_that_is_no_normalised_picture_is_refused(lean, golden_dir, tmp_path):
    original_format(lean, golden_dir, tmp_path / "original")
    path = tmp_path / "original" / "vectors.safetensors"
    tensors = load_file(str(path))
    tensors["image_processed_pad"] = tensors["image_processed_pad"] + 0.001  # between two uint8 levels
    save_file(tensors, str(path))
    with pytest.raises(ValueError, match="not a normalised uint8 picture"):
        lean.derive(tmp_path / "original", tmp_path / "lean")
