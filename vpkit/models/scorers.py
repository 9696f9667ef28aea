"""`load_scorer`: the frozen quality scorer for a model name ("tiny", "tiny-random") or a local checkpoint
folder, whichever family its config.json names (mPLUG-Owl2 or LLaVA)."""
from __future__ import annotations

import json
from pathlib import Path

import torch

from vpkit.hub import FetchError, fetch_model, is_hub_id
from vpkit.provenance import model_source
from vpkit.scoring import DEFAULT_SCORE_TYPE

from .base import PAPER_QUERY, QualityScorer
from .llava import load_llava_scorer
from .loading import resolve_dtype
from .query import MPLUGOwl2Scorer, load_mplug_owl2_scorer


def load_scorer(model: str | Path = "tiny", *, dtype: torch.dtype | str = "fp32", device: torch.device | str = "cpu",
                normalisation: str | None = None, score_type: str = DEFAULT_SCORE_TYPE, query: str = PAPER_QUERY,
                checkpointing: bool | str = False) -> QualityScorer:
    """A frozen scorer for `model`: "tiny" (the shipped pretrained toy), "tiny-random", a local folder holding an
    mPLUG-Owl2 or a llava-hf checkpoint (told apart by its config.json), or a Hugging Face Hub id ORG/NAME
    (ORG/NAME@REVISION pins a branch, tag or commit), fetched through vpkit.hub into the Hugging Face cache; a
    local folder of that name wins. The scorer's `model_source` (vpkit.provenance.model_source) says where the weights
    came from.

    `normalisation` defaults to "imagenet" for mPLUG-Owl2 models (the paper's code) and "clip" for LLaVA.
    `checkpointing`: "off", "full" (True), "selective" or "mixed" activation checkpointing
    (vpkit.models.checkpointing).
    """
    from .tiny import TINY_ASSET_DIR, TINY_RANDOM, build_tiny_model

    torch_dtype = resolve_dtype(dtype)
    options = {"score_type": score_type, "query": query, "checkpointing": checkpointing}
    if str(model) == TINY_RANDOM:
        vlm, tokenizer = build_tiny_model(seed=0)
        scorer = MPLUGOwl2Scorer(vlm.to(device=device, dtype=torch_dtype), tokenizer,
                                 normalisation=normalisation or "imagenet", **options)
        scorer.model_source = model_source(TINY_RANDOM)
        return scorer
    name, hub = str(model), None
    if str(model) == "tiny":
        if not (TINY_ASSET_DIR / "config.json").is_file():
            raise FileNotFoundError(f"the pretrained tiny model is not installed at {TINY_ASSET_DIR}; use "
                                    f"load_scorer({TINY_RANDOM!r}) for the random-weight tiny model")
        model = TINY_ASSET_DIR
    if is_hub_id(model):
        try:
            fetched = fetch_model(str(model))
        except FetchError as error:
            raise FetchError(f"model {str(model)!r} is no local folder, and as a Hub id: {error}") from None
        model, name, hub = fetched.path, str(fetched.path), fetched.source()
    folder = Path(model).expanduser()
    model_type = _model_type(folder)
    if model_type == "mplug_owl2":
        scorer = load_mplug_owl2_scorer(folder, dtype=torch_dtype, device=device,
                                        normalisation=normalisation or "imagenet", **options)
    elif model_type == "llava":
        scorer = load_llava_scorer(folder, dtype=torch_dtype, device=device, normalisation=normalisation or "clip",
                                   **options)
    else:
        scorer = None
    if scorer is not None:
        scorer.model_source = model_source(name, hub=hub)
        return scorer
    raise ValueError(f"{folder / 'config.json'}: field 'model_type' is {model_type!r}; supported: 'mplug_owl2' "
                     "(MAGAer13/mplug-owl2-llama2-7b layout) and 'llava' (llava-hf layout), or 'tiny' / "
                     f"{TINY_RANDOM!r}")


def _model_type(folder: Path) -> str | None:
    if not folder.is_dir():
        raise FileNotFoundError(f"model {str(folder)!r} is neither 'tiny', 'tiny-random', an existing folder nor a "
                                "Hub id (ORG/NAME)")
    config_path = folder / "config.json"
    if not config_path.is_file():
        raise FileNotFoundError(f"{config_path} not found: a model folder needs the checkpoint's config.json")
    try:
        return json.loads(config_path.read_text(encoding="utf-8")).get("model_type")
    except (json.JSONDecodeError, AttributeError) as err:
        raise ValueError(f"{config_path}: not a JSON object ({err})") from None
