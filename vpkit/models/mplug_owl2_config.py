"""mPLUG-Owl2 configuration: parses and validates the reference `config.json` (nested `visual_config`).

The released checkpoints store the LLM settings at the top level and the vision encoder / visual
abstractor settings as full sub-config dicts under `visual_config.visual_model` and
`visual_config.visual_abstractor`. Missing fields take the reference config-class defaults (the 7B sizes).
"""
from __future__ import annotations

import dataclasses
import json
import warnings
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

MODEL_TYPE = "mplug_owl2"
ARCHITECTURE = "MPLUGOwl2LlamaForCausalLM"
VISION_MODEL_TYPE = "mplug_owl_vision_model"
ABSTRACTOR_MODEL_TYPE = "mplug_owl_visual_abstract"
VISION_ACTIVATIONS = ("quick_gelu", "gelu")


class ConfigError(ValueError):
    """A config.json that this implementation cannot build a model from."""


def read_json_file(path: str | Path, missing: str) -> Any:
    """A model folder's JSON file; FileNotFoundError "<path>: <missing>" if absent, ConfigError if not JSON."""
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: {missing}") from None
    except json.JSONDecodeError as err:
        raise ConfigError(f"{path}: not valid JSON ({err})") from None


@dataclass
class VisionConfig:
    """ViT encoder (`visual_config.visual_model`)."""

    hidden_size: int = 1024
    intermediate_size: int = 4096
    num_hidden_layers: int = 24
    num_attention_heads: int = 16
    num_channels: int = 3
    image_size: int = 448
    patch_size: int = 14
    hidden_act: str = "quick_gelu"
    layer_norm_eps: float = 1e-6
    use_cls_token: bool = True
    use_post_layernorm: bool = True

    @property
    def grid_size(self) -> int:
        return self.image_size // self.patch_size

    @property
    def num_positions(self) -> int:
        """Tokens out of the encoder: CLS + grid^2 patches."""
        return 1 + self.grid_size**2


@dataclass
class AbstractorConfig:
    """Visual abstractor (`visual_config.visual_abstractor`)."""

    num_learnable_queries: int = 64
    hidden_size: int = 1024
    num_hidden_layers: int = 6
    num_attention_heads: int = 16
    intermediate_size: int = 2816
    layer_norm_eps: float = 1e-6
    encoder_hidden_size: int = 1024
    grid_size: int = 32
    use_cls_token: bool = True
    add_v2t_pos_emb: bool = False


@dataclass
class MPLUGOwl2Config:
    """Whole-model config; LLM fields at the top level as in the reference."""

    vocab_size: int = 32000
    hidden_size: int = 4096
    intermediate_size: int = 11008
    num_hidden_layers: int = 32
    num_attention_heads: int = 32
    num_key_value_heads: int | None = None
    hidden_act: str = "silu"
    max_position_embeddings: int = 2048
    rms_norm_eps: float = 1e-6
    rope_theta: float = 10000.0
    rope_scaling: dict | None = None
    attention_bias: bool = False
    tie_word_embeddings: bool = False
    bos_token_id: int | None = 1
    eos_token_id: int | None = 2
    pad_token_id: int | None = None
    vision: VisionConfig = field(default_factory=VisionConfig)
    abstractor: AbstractorConfig = field(default_factory=AbstractorConfig)
    source: str = "<in memory>"

    def __post_init__(self) -> None:
        if self.num_key_value_heads is None:
            self.num_key_value_heads = self.num_attention_heads
        self.validate()

    # ----------------------------------------------------------------- derived sizes
    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads

    @property
    def num_visual_tokens(self) -> int:
        """Embeddings one image contributes to the LLM sequence: the queries plus the end-of-image vector."""
        return self.abstractor.num_learnable_queries + 1

    # ----------------------------------------------------------------- validation
    def validate(self) -> None:
        src = self.source
        for name in ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers",
                     "num_attention_heads", "num_key_value_heads", "max_position_embeddings"):
            _require_positive_int(getattr(self, name), name, src)
        _require_divisible(self.hidden_size, self.num_attention_heads, "hidden_size", "num_attention_heads", src)
        _require_divisible(self.num_attention_heads, self.num_key_value_heads,
                           "num_attention_heads", "num_key_value_heads", src)
        if self.head_dim % 2:
            raise ConfigError(f"{src}: hidden_size / num_attention_heads = {self.head_dim} must be even for "
                              "rotary embeddings; fix hidden_size or num_attention_heads")
        if self.hidden_act != "silu":
            raise ConfigError(f"{src}: field 'hidden_act' is {self.hidden_act!r}; the LLaMA-2 MLP of "
                              "mPLUG-Owl2 uses 'silu'")
        if self.rope_scaling is not None:
            raise ConfigError(f"{src}: field 'rope_scaling' = {self.rope_scaling!r} is not supported; "
                              "set it to null (the released mPLUG-Owl2 has no rope scaling)")
        if self.tie_word_embeddings:
            raise ConfigError(f"{src}: field 'tie_word_embeddings' is true; mPLUG-Owl2 keeps a separate "
                              "lm_head, set it to false")
        _require_positive_float(self.rms_norm_eps, "rms_norm_eps", src)
        _require_positive_float(self.rope_theta, "rope_theta", src)
        self._validate_vision()
        self._validate_abstractor()

    def _validate_vision(self) -> None:
        v, src, pre = self.vision, self.source, "visual_config.visual_model."
        for name in ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
                     "num_channels", "image_size", "patch_size"):
            _require_positive_int(getattr(v, name), pre + name, src)
        _require_divisible(v.hidden_size, v.num_attention_heads, pre + "hidden_size",
                           pre + "num_attention_heads", src)
        _require_divisible(v.image_size, v.patch_size, pre + "image_size", pre + "patch_size", src)
        if v.hidden_act not in VISION_ACTIVATIONS:
            raise ConfigError(f"{src}: field '{pre}hidden_act' is {v.hidden_act!r}; "
                              f"supported: {', '.join(VISION_ACTIVATIONS)}")
        if not (v.use_cls_token and v.use_post_layernorm):
            raise ConfigError(f"{src}: fields '{pre}use_cls_token' and '{pre}use_post_layernorm' must be true "
                              "(the only layout mPLUG-Owl2 ships)")
        _require_positive_float(v.layer_norm_eps, pre + "layer_norm_eps", src)

    def _validate_abstractor(self) -> None:
        a, v, src, pre = self.abstractor, self.vision, self.source, "visual_config.visual_abstractor."
        for name in ("num_learnable_queries", "hidden_size", "num_hidden_layers", "num_attention_heads",
                     "intermediate_size", "encoder_hidden_size", "grid_size"):
            _require_positive_int(getattr(a, name), pre + name, src)
        _require_divisible(a.hidden_size, a.num_attention_heads, pre + "hidden_size",
                           pre + "num_attention_heads", src)
        if not (a.hidden_size == a.encoder_hidden_size == v.hidden_size):
            raise ConfigError(
                f"{src}: '{pre}hidden_size' ({a.hidden_size}), '{pre}encoder_hidden_size' "
                f"({a.encoder_hidden_size}) and 'visual_config.visual_model.hidden_size' ({v.hidden_size}) "
                "must be equal: the abstractor attends over the raw vision tokens")
        if a.hidden_size % 4:
            raise ConfigError(f"{src}: '{pre}hidden_size' ({a.hidden_size}) must be a multiple of 4 for the "
                              "2-D sine-cosine key position table")
        if a.grid_size != v.grid_size:
            raise ConfigError(
                f"{src}: '{pre}grid_size' is {a.grid_size} but image_size / patch_size = "
                f"{v.image_size} / {v.patch_size} = {v.grid_size}; the key position table (1 + grid^2 rows) is "
                f"added to the vision tokens, so set grid_size to {v.grid_size}")
        if not a.use_cls_token:
            raise ConfigError(f"{src}: field '{pre}use_cls_token' must be true (the vision encoder emits a CLS token)")
        if a.add_v2t_pos_emb:
            raise ConfigError(f"{src}: field '{pre}add_v2t_pos_emb' = true is not supported; set it to false")
        _require_positive_float(a.layer_norm_eps, pre + "layer_norm_eps", src)

    # ----------------------------------------------------------------- (de)serialisation
    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "<dict>") -> MPLUGOwl2Config:
        if not isinstance(data, dict):
            raise ConfigError(f"{source}: expected a JSON object at the top level")
        model_type = data.get("model_type")
        if model_type != MODEL_TYPE:
            raise ConfigError(
                f"{source}: field 'model_type' is {model_type!r}, not {MODEL_TYPE!r}: this folder holds another "
                "architecture (for llava-hf folders use vpkit.models.load_scorer, which detects them)")
        visual = data.get("visual_config") or {}
        if not isinstance(visual, dict):
            raise ConfigError(f"{source}: field 'visual_config' must be an object with 'visual_model' and "
                              "'visual_abstractor'")
        vision = _pick(VisionConfig, visual.get("visual_model") or {}, source, "visual_config.visual_model")
        abstractor = _pick(AbstractorConfig, visual.get("visual_abstractor") or {}, source,
                           "visual_config.visual_abstractor")
        top = {f.name: data[f.name] for f in fields(cls)
               if f.name not in ("vision", "abstractor", "source") and f.name in data}
        warn_about_dropout(data, source)
        return cls(**top, vision=vision, abstractor=abstractor, source=source)

    @classmethod
    def from_json_file(cls, path: str | Path) -> MPLUGOwl2Config:
        data = read_json_file(path, "config.json not found; the model folder needs the checkpoint's config.json "
                                    "next to its weights")
        return cls.from_dict(data, source=str(path))

    def to_dict(self) -> dict[str, Any]:
        """The reference layout (top-level LLM fields, nested visual_config), readable by `from_dict`."""
        top = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in ("vision", "abstractor", "source")}
        vision = dataclasses.asdict(self.vision) | {"model_type": VISION_MODEL_TYPE}
        abstractor = dataclasses.asdict(self.abstractor) | {"model_type": ABSTRACTOR_MODEL_TYPE}
        return {"architectures": [ARCHITECTURE], "model_type": MODEL_TYPE, **top,
                "visual_config": {"visual_model": vision, "visual_abstractor": abstractor}}


def warn_about_dropout(data: dict, source: str) -> list[str]:
    """Warn about every non-zero dropout probability in a config.json; returns the fields warned about.

    vpkit runs the frozen model in eval mode, so dropout never acts. The paper's Hugging Face Trainer called
    model.train() before each training step, which put mPLUG-Owl2 in train mode too: there, a non-zero dropout
    (visual_model.attention_dropout, visual_abstractor.attention_probs_dropout_prob; both 0.0 by default, and
    the LLaMA part has none) would have acted while the prompt trained.
    """
    visual = data.get("visual_config") if isinstance(data.get("visual_config"), dict) else {}
    sections = {"": data, "visual_config.visual_model.": visual.get("visual_model"),
                "visual_config.visual_abstractor.": visual.get("visual_abstractor")}
    found = [f"{prefix}{key} = {value}" for prefix, section in sections.items() if isinstance(section, dict)
             for key, value in section.items()
             if "dropout" in key and isinstance(value, (int, float)) and not isinstance(value, bool) and value]
    if found:
        warnings.warn(f"{source}: {', '.join(found)}: vpkit runs the frozen model in eval mode, without dropout; "
                      "the paper's Trainer trained with the model in train mode, where this dropout was active",
                      UserWarning, stacklevel=3)
    return found


def _pick(cls, data: dict, source: str, prefix: str):
    """Build a sub-config from the known fields of a full sub-config dict (generic PretrainedConfig fields ignored)."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: field '{prefix}' must be an object")
    known = {f.name for f in fields(cls)}
    return cls(**{k: v for k, v in data.items() if k in known})


def _require_positive_int(value, name: str, source: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ConfigError(f"{source}: field '{name}' must be a positive integer, got {value!r}")


def _require_positive_float(value, name: str, source: str) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        raise ConfigError(f"{source}: field '{name}' must be a positive number, got {value!r}")


def _require_divisible(value: int, divisor: int, name: str, divisor_name: str, source: str) -> None:
    if value % divisor:
        raise ConfigError(f"{source}: field '{name}' ({value}) must be divisible by '{divisor_name}' ({divisor})")
