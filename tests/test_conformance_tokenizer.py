"""The paper's query and score words with the real LLaMA-2 tokenizer (tests/fixtures/llama2_tokenizer, whose README
says where the tokenizer file and the expected ids came from).

expected.json holds what the original mPLUG-Owl2 code (transformers 4.31, slow LlamaTokenizer) builds. A checkpoint
folder is the tokenizer.model plus a tokenizer_config.json; vpkit must build the same ids for every
tokenizer_config.json a checkpoint may carry, in particular one without `add_bos_token` (transformers 5 then adds
no BOS where the original did).
"""
import json
import shutil

import pytest
from conftest import FIXTURES_ROOT

from vpkit.models import MPLUGOwl2ForCausalLM, tiny_config
from vpkit.models.query import PAPER_PROMPT, MPLUGOwl2Scorer, load_tokenizer, tokenize_with_image
from vpkit.scoring import word_token_id

SOURCE = FIXTURES_ROOT / "llama2_tokenizer"
ADDED_BOS = {"__type": "AddedToken", "content": "<s>", "lstrip": False, "normalized": True, "rstrip": False,
             "single_word": False}
# tokenizer_config.json variants: what the MAGAer13 checkpoint era wrote, and what other tools write.
CONFIG_VARIANTS = {
    "add_bos_token true, legacy false (the 4.31-era file)": {"add_bos_token": True, "legacy": False,
                                                             "bos_token": ADDED_BOS},
    "no add_bos_token key": {},
    "add_bos_token false": {"add_bos_token": False},
    "legacy true": {"legacy": True},
    "legacy false": {"legacy": False},
    "add_prefix_space true": {"add_prefix_space": True},
    "add_prefix_space null": {"add_prefix_space": None},
    "add_prefix_space false": {"add_prefix_space": False},
    "no add_bos_token, legacy false, add_prefix_space false": {"legacy": False, "add_prefix_space": False},
    "LlamaTokenizerFast": {"tokenizer_class": "LlamaTokenizerFast"},
}


@pytest.fixture(scope="module")
def expected():
    return json.loads((SOURCE / "expected.json").read_text())


@pytest.fixture(scope="module")
def llama_sized_model():
    """A random tiny mPLUG-Owl2 with LLaMA-2's 32,000-token vocabulary (the scorer needs a model; ids only)."""
    return MPLUGOwl2ForCausalLM.random_init(tiny_config(32000), seed=0)


def checkpoint_tokenizer(folder, settings: dict):
    """A checkpoint-like tokenizer folder: tokenizer.model + tokenizer_config.json, loaded as vpkit loads it."""
    folder.mkdir()
    shutil.copyfile(SOURCE / "tokenizer.model", folder / "tokenizer.model")
    config = {"tokenizer_class": "LlamaTokenizer", "bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>",
              "model_max_length": 2048, "clean_up_tokenization_spaces": False, **settings}
    (folder / "tokenizer_config.json").write_text(json.dumps(config))
    return load_tokenizer(folder)


@pytest.mark.parametrize("variant", list(CONFIG_VARIANTS))
def test_the_query_and_score_word_ids_are_the_originals(tmp_path, expected, llama_sized_model, variant):
    tokenizer = checkpoint_tokenizer(tmp_path / "model", CONFIG_VARIANTS[variant])
    scorer = MPLUGOwl2Scorer(llama_sized_model, tokenizer)
    assert scorer.prompt == expected["query"] == PAPER_PROMPT
    ids = scorer.prompt_ids
    assert len(ids) == len(expected["input_ids"]), (variant, ids)
    at = ids.index(expected["image_token_index"])
    pieces = ["<s>", *expected["chunk_pieces"][0][1:], "<image>", *expected["chunk_pieces"][1][1:]]
    for position, (got, want, piece) in enumerate(zip(ids, expected["input_ids"], pieces, strict=True)):
        assert got == want, f"{variant}: position {position} ({piece!r}) is {got}, the original {want}"
        if position != at:
            assert tokenizer.convert_ids_to_tokens(got) == piece

    # the score words (one tokenizer load per variant serves both checks)
    assert {word: word_token_id(tokenizer, word) for word in expected["score_word_ids"]} == expected["score_word_ids"]
    used = dict(zip(scorer.score_word_list, scorer.word_ids.tolist(), strict=True))
    assert {w: used[w] for w in ("good", "fine", "poor", "bad")} == {
        w: expected["score_word_ids"][w] for w in ("good", "fine", "poor", "bad")
    }


def test_a_tokenizer_resaved_by_transformers_5_builds_the_same_ids(tmp_path, expected):
    # save_pretrained writes tokenizer.json and a new tokenizer_config.json (no add_bos_token key)
    original = checkpoint_tokenizer(tmp_path / "model", {"add_prefix_space": False})
    original.save_pretrained(str(tmp_path / "resaved"))
    resaved = load_tokenizer(tmp_path / "resaved")
    assert tokenize_with_image(PAPER_PROMPT, resaved) == expected["input_ids"]


def test_a_tokenizer_whose_bos_is_not_the_models_is_refused(tmp_path, expected, llama_sized_model):
    tokenizer = checkpoint_tokenizer(tmp_path / "model", {"bos_token": "</s>"})
    with pytest.raises(ValueError, match=r"query starts with \[2\].*bos_token_id 1"):
        MPLUGOwl2Scorer(llama_sized_model, tokenizer)
