"""Writing an mPLUG-Owl2 model folder in the layout `MPLUGOwl2ForCausalLM.from_pretrained` reads.

Every file is written to a temporary name in the target folder and moved into place with os.replace;
config.json goes last, so a folder with a config.json is complete.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

from safetensors.torch import save_file

from vpkit.atomic import atomic_replace

from .mplug_owl2 import MPLUGOwl2ForCausalLM

TOKENIZER_CLASS = "PreTrainedTokenizerFast"  # resolvable by AutoTokenizer across transformers 5.x


def save_pretrained(model: MPLUGOwl2ForCausalLM, tokenizer, directory: str | Path) -> Path:
    """Write config.json, model.safetensors and the tokenizer files (if `tokenizer` is given) to `directory`."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    atomic_replace(directory / "model.safetensors", lambda tmp: save_file(state, tmp, metadata={"format": "pt"}))
    if tokenizer is not None:
        _save_tokenizer(tokenizer, directory)
    config_text = json.dumps(model.config.to_dict(), indent=2, sort_keys=False) + "\n"
    atomic_replace(directory / "config.json", lambda tmp: Path(tmp).write_text(config_text, encoding="utf-8"))
    return directory


def _save_tokenizer(tokenizer, directory: Path) -> None:
    staging = Path(tempfile.mkdtemp(prefix=".tokenizer-", dir=directory))
    try:
        tokenizer.save_pretrained(str(staging))
        config_path = staging / "tokenizer_config.json"
        if config_path.is_file():
            settings = json.loads(config_path.read_text(encoding="utf-8"))
            if settings.get("tokenizer_class") in (None, "TokenizersBackend"):
                settings["tokenizer_class"] = TOKENIZER_CLASS
            config_path.write_text(json.dumps(settings, indent=2) + "\n", encoding="utf-8")
        for path in staging.iterdir():
            os.replace(path, directory / path.name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
