"""mPLUG-Owl2 conformance against vectors produced by the original reference code (tests/fixtures/mplug_owl2_tiny,
whose README says how they were made and how the shipped copy was derived from them).

The model is loaded through the same `from_pretrained` a user calls, in float32. Measured max differences are
printed (run with -s to see them).
"""
import hashlib
import json
import shutil

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file, save_file

from vpkit.models import MPLUGOwl2ForCausalLM, ReferenceImageProcessor
from vpkit.models.mplug_owl2 import key_position_table, query_position_table

LOGIT_TOL = 1e-4
GRAD_TOL = 1e-5
IMAGE_TOL = 1e-6


def max_diff(actual: torch.Tensor, expected: torch.Tensor) -> float:
    assert actual.shape == expected.shape, (actual.shape, expected.shape)
    return (actual.detach().double() - expected.double()).abs().max().item()


@pytest.fixture(scope="module")
def lean_vectors(repo_script):
    """The script that derived the shipped vectors from the reference's; it also reads them back."""
    return repo_script("scripts/lean_conformance_vectors.py")


@pytest.fixture(scope="module")
def vectors(golden_dir, lean_vectors):
    return lean_vectors.load_vectors(golden_dir)


@pytest.fixture(scope="module")
def golden_model(golden_dir):
    torch.manual_seed(0)
    return MPLUGOwl2ForCausalLM.from_pretrained(golden_dir, dtype=torch.float32, device="cpu")


@pytest.fixture(scope="module")
def forward_with_grad(golden_model, vectors):
    pixels = vectors["pixel_values"].clone().requires_grad_(True)
    output = golden_model(vectors["input_ids"], pixels, vectors["attention_mask"])
    loss = (output.logits[:, -1, 7] - output.logits[:, -1, 11]).sum()
    loss.backward()
    return output, loss, pixels.grad


def test_loaded_model_is_frozen_free_and_in_eval(golden_model):
    assert not golden_model.training
    assert all(p.dtype == torch.float32 for p in golden_model.parameters())


def test_logits_and_loss(forward_with_grad, vectors):
    output, loss, _ = forward_with_grad
    diff = max_diff(output.logits, vectors["logits"])
    print(f"\nlogits max|diff| = {diff:.3e}; loss {loss.item():.9f} vs {vectors['loss'].item():.9f}")
    assert output.logits.dtype == torch.float32
    assert diff < LOGIT_TOL
    assert abs(loss.item() - vectors["loss"].item()) < LOGIT_TOL
    assert max_diff(output.logits[:, -1], vectors["last_logits"]) < LOGIT_TOL


def test_pixel_gradient(forward_with_grad, vectors):
    _, _, grad = forward_with_grad
    diff = max_diff(grad, vectors["pixel_values_grad"])
    print(f"\npixel gradient max|diff| = {diff:.3e} (max |grad| {vectors['pixel_values_grad'].abs().max():.3f})")
    assert diff < GRAD_TOL


@pytest.mark.parametrize("name, golden", [
    ("vision_hidden_state", "vision_last_hidden_state"),
    ("image_features", "image_features"),
    ("inputs_embeds", "inputs_embeds"),
])
def test_intermediates(forward_with_grad, vectors, name, golden):
    output, _, _ = forward_with_grad
    diff = max_diff(getattr(output, name), vectors[golden])
    print(f"\n{name} max|diff| = {diff:.3e}")
    assert diff < LOGIT_TOL


def test_modality_indicators_and_expanded_mask_exact(forward_with_grad, vectors):
    output, _, _ = forward_with_grad
    assert torch.equal(output.modality_indicators, vectors["modality_indicators"])
    assert torch.equal(output.attention_mask, vectors["expanded_attention_mask"])


def test_padded_scenario(golden_model, vectors):
    with torch.no_grad():
        output = golden_model(vectors["padded_input_ids"], vectors["pixel_values"], vectors["padded_attention_mask"])
    diff = max_diff(output.logits, vectors["padded_logits"])
    print(f"\npadded_logits max|diff| = {diff:.3e}")
    assert diff < LOGIT_TOL
    assert torch.equal(output.modality_indicators, vectors["padded_modality_indicators"])
    assert torch.equal(output.attention_mask, vectors["padded_expanded_attention_mask"])


def test_scoring_path_matches_full_logits(golden_model, vectors):
    rows = torch.tensor([7, 11, 3, 999])
    with torch.no_grad():
        last = golden_model.last_token_logits(vectors["input_ids"], vectors["pixel_values"], rows)
        padded = golden_model.last_token_logits(vectors["padded_input_ids"], vectors["pixel_values"], rows,
                                                vectors["padded_attention_mask"])
    print(f"\nlast-position path max|diff| = {max_diff(last, vectors['last_logits'][:, rows]):.3e}")
    assert max_diff(last, vectors["last_logits"][:, rows]) < LOGIT_TOL
    # Sample 1 of the padded run ends at position 16 (3 padding positions after it).
    assert max_diff(padded[0], vectors["padded_logits"][0, -1, rows]) < LOGIT_TOL
    assert max_diff(padded[1], vectors["padded_logits"][1, 16, rows]) < LOGIT_TOL


@pytest.mark.parametrize("aspect", ["pad", "resize", "plain"])
def test_image_processor(golden_dir, vectors, lean_vectors, aspect):
    processor = ReferenceImageProcessor.from_json_file(golden_dir / "preprocessor_config.json")
    image = Image.open(golden_dir / "test_image.png")
    pixels = np.ascontiguousarray(np.asarray(image.convert("RGB")))
    assert pixels.shape == (384, 512, 3)
    assert hashlib.sha256(pixels.tobytes()).hexdigest() == lean_vectors.metadata(golden_dir)["test_image_uint8_sha256"]
    diff = max_diff(processor(image, aspect=aspect), vectors[f"image_processed_{aspect}"])
    print(f"\nimage_processed_{aspect} max|diff| = {diff:.3e}")
    assert diff < IMAGE_TOL


def test_position_tables_match_stored_buffers(golden_dir):
    config = json.loads((golden_dir / "config.json").read_text())["visual_config"]["visual_abstractor"]
    state = load_file(str(golden_dir / "model.safetensors"))
    prefix = "model.visual_abstractor.encoder.layers.0.crossattention.attention."
    queries = query_position_table(config["num_learnable_queries"], config["hidden_size"])
    keys = key_position_table(config["grid_size"], config["hidden_size"])
    assert max_diff(queries, state[prefix + "q_pos_embed"]) < 1e-6
    assert max_diff(keys, state[prefix + "k_pos_embed"]) < 1e-6


# ===================================================================== other checkpoint layouts
def _state(golden_dir, drop_inv_freq: bool, drop_tables: bool) -> dict:
    state = load_file(str(golden_dir / "model.safetensors"))
    return {k: v for k, v in state.items()
            if not (drop_inv_freq and k.endswith("inv_freq"))
            and not (drop_tables and k.endswith(("q_pos_embed", "k_pos_embed")))}


def _shards(state: dict) -> list[dict]:
    """Three shards: LLM layers, vision encoder, everything else (as layer-wise converters split)."""
    groups = [{}, {}, {}]
    for key, tensor in state.items():
        index = 0 if key.startswith("model.layers.") else 1 if key.startswith("model.vision_model.") else 2
        groups[index][key] = tensor
    return groups


def _write_index(folder, name: str, shard_names: list[str], shards: list[dict]) -> None:
    weight_map = {key: file for file, shard in zip(shard_names, shards) for key in shard}
    (folder / name).write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))


def _copy_config(golden_dir, folder) -> None:
    folder.mkdir()
    shutil.copy(golden_dir / "config.json", folder / "config.json")


def _layout_sharded_bin(golden_dir, folder) -> None:
    shards = _shards(_state(golden_dir, drop_inv_freq=True, drop_tables=True))
    names = [f"pytorch_model-{i + 1:05d}-of-{len(shards):05d}.bin" for i in range(len(shards))]
    for name, shard in zip(names, shards):
        torch.save(shard, folder / name)
    _write_index(folder, "pytorch_model.bin.index.json", names, shards)


def _layout_sharded_safetensors(golden_dir, folder) -> None:
    shards = _shards(_state(golden_dir, drop_inv_freq=False, drop_tables=False))
    names = [f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors" for i in range(len(shards))]
    for name, shard in zip(names, shards):
        save_file(shard, str(folder / name), metadata={"format": "pt"})
    _write_index(folder, "model.safetensors.index.json", names, shards)


def _layout_safetensors_shards_without_index(golden_dir, folder) -> None:
    shards = _shards(_state(golden_dir, drop_inv_freq=True, drop_tables=True))
    for i, shard in enumerate(shards):
        save_file(shard, str(folder / f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors"))


def _layout_single_bin(golden_dir, folder) -> None:
    torch.save(_state(golden_dir, drop_inv_freq=False, drop_tables=True), folder / "pytorch_model.bin")


@pytest.mark.parametrize("write_layout", [
    _layout_sharded_bin, _layout_sharded_safetensors, _layout_safetensors_shards_without_index, _layout_single_bin,
], ids=["sharded-bin-index-no-buffers", "sharded-safetensors-index", "safetensors-shards-no-index", "single-bin"])
def test_other_checkpoint_layouts_reproduce_logits(golden_dir, vectors, tmp_path, write_layout):
    folder = tmp_path / "checkpoint"
    _copy_config(golden_dir, folder)
    write_layout(golden_dir, folder)
    model = MPLUGOwl2ForCausalLM.from_pretrained(folder, dtype="fp32", progress=False)
    with torch.no_grad():
        logits = model(vectors["input_ids"], vectors["pixel_values"], vectors["attention_mask"]).logits
    diff = max_diff(logits, vectors["logits"])
    print(f"\n{write_layout.__name__}: logits max|diff| = {diff:.3e}")
    assert diff < LOGIT_TOL
