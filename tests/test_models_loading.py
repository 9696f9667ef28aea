"""Checkpoint folders: save/load round trip, layouts, and the errors a user sees for broken folders."""
import json
import shutil

import pytest
import torch
from _messages import raises_one_line
from safetensors.torch import load_file, save_file

from vpkit.models import (
    CheckpointError,
    ConfigError,
    MPLUGOwl2Config,
    MPLUGOwl2ForCausalLM,
    build_tiny_model,
    resolve_dtype,
    save_pretrained,
    tiny_config,
)
from vpkit.models.processor import ReferenceImageProcessor


@pytest.fixture(scope="module")
def small_model():
    model, tokenizer = build_tiny_model(seed=3)
    return model, tokenizer


@pytest.fixture(scope="module")
def saved_dir(small_model, tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny_saved")
    save_pretrained(*small_model, folder)
    return folder


def _inputs(model, batch=2):
    torch.manual_seed(0)
    size = model.config.vision.image_size
    ids = torch.tensor([[1, 5, -200, 7, 8, 9]] * batch)
    return ids, torch.randn(batch, 3, size, size)


def _copy(saved_dir, tmp_path):
    folder = tmp_path / "copy"
    shutil.copytree(saved_dir, folder)
    return folder


def test_save_writes_reference_layout(saved_dir, small_model):
    names = sorted(p.name for p in saved_dir.iterdir())
    assert names == ["config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"]
    config = json.loads((saved_dir / "config.json").read_text())
    assert config["model_type"] == "mplug_owl2"
    assert config["architectures"] == ["MPLUGOwl2LlamaForCausalLM"]
    assert config["visual_config"]["visual_abstractor"]["num_learnable_queries"] == 16
    keys = set(load_file(str(saved_dir / "model.safetensors")))
    assert keys == set(small_model[0].state_dict())
    assert "model.layers.0.self_attn.k_proj.multiway.1.weight" in keys
    assert "model.visual_abstractor.encoder.layers.0.crossattention.attention.k_pos_embed" in keys


def test_round_trip_reproduces_outputs(saved_dir, small_model):
    model = small_model[0]
    loaded = MPLUGOwl2ForCausalLM.from_pretrained(saved_dir, progress=False)
    ids, pixels = _inputs(model)
    with torch.no_grad():
        assert torch.equal(loaded(ids, pixels).logits, model(ids, pixels).logits)
    assert not loaded.training
    assert loaded.config.to_dict() == model.config.to_dict()


@pytest.mark.parametrize("dtype", ["bf16", "fp16", torch.bfloat16])
def test_load_casts_parameters_keeps_position_tables_float32(saved_dir, dtype):
    loaded = MPLUGOwl2ForCausalLM.from_pretrained(saved_dir, dtype=dtype, progress=False)
    assert {p.dtype for p in loaded.parameters()} == {resolve_dtype(dtype)}
    tables = [b for n, b in loaded.named_buffers() if n.endswith("pos_embed")]
    assert tables and all(t.dtype == torch.float32 for t in tables)


def test_load_from_single_bin_with_inv_freq_and_no_tables(saved_dir, small_model, tmp_path):
    model = small_model[0]
    folder = tmp_path / "bin"
    folder.mkdir()
    shutil.copy(saved_dir / "config.json", folder)
    state = {k: v for k, v in model.state_dict().items() if not k.endswith("pos_embed")}
    for layer in range(model.config.num_hidden_layers):
        state[f"model.layers.{layer}.self_attn.rotary_emb.inv_freq"] = torch.zeros(model.config.head_dim // 2)
    torch.save(state, folder / "pytorch_model.bin")
    loaded = MPLUGOwl2ForCausalLM.from_pretrained(folder, progress=False)
    ids, pixels = _inputs(model)
    with torch.no_grad():
        assert torch.allclose(loaded(ids, pixels).logits, model(ids, pixels).logits, atol=1e-5)


# A model folder's files that do not fit together are told by what is wrong with which file (a missing or extra
# weight, a shape, a field): there is no option or command to offer, so these lines owe no fix (fix=False).


def test_missing_folder_error(tmp_path):
    with raises_one_line(FileNotFoundError, names=(tmp_path / "nowhere",)):
        MPLUGOwl2ForCausalLM.from_pretrained(tmp_path / "nowhere")


def test_missing_config_error(saved_dir, tmp_path):
    folder = _copy(saved_dir, tmp_path)
    (folder / "config.json").unlink()
    with raises_one_line(FileNotFoundError, names=(folder / "config.json",)):
        MPLUGOwl2ForCausalLM.from_pretrained(folder)


def test_other_architecture_error(saved_dir, tmp_path):
    folder = _copy(saved_dir, tmp_path)
    (folder / "config.json").write_text(json.dumps({"model_type": "llava", "architectures": ["Llava"]}))
    with raises_one_line(ConfigError, names=("model_type", "'llava'")):
        MPLUGOwl2ForCausalLM.from_pretrained(folder)


def test_no_weights_error(saved_dir, tmp_path):
    folder = _copy(saved_dir, tmp_path)
    (folder / "model.safetensors").unlink()
    with raises_one_line(FileNotFoundError, names=(folder, "safetensors"), fix=False):
        MPLUGOwl2ForCausalLM.from_pretrained(folder)


def test_missing_keys_error_lists_them(saved_dir, tmp_path):
    folder = _copy(saved_dir, tmp_path)
    state = load_file(str(folder / "model.safetensors"))
    for key in ("lm_head.weight", "model.norm.weight"):
        del state[key]
    save_file(state, str(folder / "model.safetensors"))
    with raises_one_line(CheckpointError, names=(folder, "2 key(s)", "lm_head.weight", "model.norm.weight"),
                         fix=False):
        MPLUGOwl2ForCausalLM.from_pretrained(folder)


def test_unexpected_keys_error_lists_them(saved_dir, tmp_path):
    folder = _copy(saved_dir, tmp_path)
    state = load_file(str(folder / "model.safetensors"))
    state["model.mm_projector.weight"] = torch.zeros(2, 2)
    save_file(state, str(folder / "model.safetensors"))
    with raises_one_line(CheckpointError, names=(folder, "model.mm_projector.weight"), fix=False):
        MPLUGOwl2ForCausalLM.from_pretrained(folder)


def test_unexpected_key_in_unindexed_bin(saved_dir, small_model, tmp_path):
    folder = tmp_path / "bin"
    folder.mkdir()
    shutil.copy(saved_dir / "config.json", folder)
    torch.save(dict(small_model[0].state_dict(), **{"extra.bias": torch.zeros(1)}), folder / "pytorch_model.bin")
    with raises_one_line(CheckpointError, names=(folder, "extra.bias"), fix=False):
        MPLUGOwl2ForCausalLM.from_pretrained(folder)


def test_shape_mismatch_error_names_key(saved_dir, tmp_path):
    folder = _copy(saved_dir, tmp_path)
    config = json.loads((folder / "config.json").read_text())
    config["intermediate_size"] = 64
    (folder / "config.json").write_text(json.dumps(config))
    with raises_one_line(CheckpointError, names=(folder, "mlp", "64"), fix=False):
        MPLUGOwl2ForCausalLM.from_pretrained(folder)


def test_index_naming_absent_shard_error(saved_dir, tmp_path):
    folder = _copy(saved_dir, tmp_path)
    (folder / "model.safetensors.index.json").write_text(
        json.dumps({"weight_map": {"lm_head.weight": "model-00002-of-00002.safetensors"}}))
    with raises_one_line(FileNotFoundError, names=("model-00002-of-00002.safetensors",)):
        MPLUGOwl2ForCausalLM.from_pretrained(folder)


@pytest.mark.parametrize("change, names", [
    ({"visual_config": {"visual_abstractor": {"grid_size": 5}}}, ("grid_size", "5")),
    ({"visual_config": {"visual_abstractor": {"hidden_size": 48, "encoder_hidden_size": 48}}},
     ("encoder_hidden_size", "48")),
    ({"hidden_size": 90}, ("hidden_size", "90")),
    ({"rope_scaling": {"type": "linear", "factor": 2.0}}, ("rope_scaling",)),
    ({"num_hidden_layers": 0}, ("num_hidden_layers", "0")),
    ({"visual_config": {"visual_model": {"hidden_act": "tanh"}}}, ("hidden_act", "'tanh'")),
])
def test_config_validation(change, names):
    data = tiny_config(100).to_dict()
    for key, value in change.items():
        if key == "visual_config":
            for part, fields in value.items():
                data["visual_config"][part].update(fields)
        else:
            data[key] = value
    with raises_one_line(ConfigError, names=("test.json", *names)):
        MPLUGOwl2Config.from_dict(data, source="test.json")


def test_config_defaults_are_the_7b_sizes():
    config = MPLUGOwl2Config.from_dict({"model_type": "mplug_owl2"})
    assert (config.hidden_size, config.num_hidden_layers, config.vocab_size) == (4096, 32, 32000)
    assert (config.vision.image_size, config.vision.num_positions, config.num_visual_tokens) == (448, 1025, 65)


@pytest.mark.parametrize("read, name", [(MPLUGOwl2Config.from_json_file, "config.json"),
                                        (ReferenceImageProcessor.from_json_file, "preprocessor_config.json")])
def test_model_folder_json_errors_name_the_file(tmp_path, read, name):
    with raises_one_line(FileNotFoundError, names=(tmp_path / name,), fix=False):
        read(tmp_path / name)
    (tmp_path / name).write_text("{not json")
    with raises_one_line(ValueError, names=(tmp_path / name,), fix=False):
        read(tmp_path / name)
