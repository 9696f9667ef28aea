"""Pixel-level visual prompts: the only trainable part of the model.

A prompter holds a few small tensors ``theta`` and places ``delta * tanh(theta)`` on an
``S x S`` canvas (the "prompt"), then combines the canvas with the input images and clamps
the result to [0, 1]. The four shapes follow the paper's config vocabulary:

``padding``      a border of ``size`` px on every side (tensors ``pad_up``, ``pad_down``,
                 ``pad_left``, ``pad_right``, as in the paper's ``visual_prompt.pth``);
``fixed_patch``  a ``size x size`` square at the top-left corner or, with ``is_center``,
                 with its top-left corner at ``(S//2 - size//2, S//2 - size//2)`` (tensor ``patch``);
``full``         the whole image (tensor ``prompt``); ``size`` and ``is_center`` are ignored;
``replace_pad``  the padding border, but the border pixels of the image are *replaced* by the
                 prompt instead of combined with it (same tensors as ``padding``); no mode.

Modes combine image ``x`` and canvas ``p``: ``add`` is ``x + p`` and ``mul`` is ``x * p``
(both as in the paper), ``mul_residual`` is ``x * (1 + p)`` (our fix: the paper's canvas is 0
outside the learned region, so its ``mul`` blacks out everything the prompt does not cover).
"""
from __future__ import annotations

import math
import warnings
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch
from torch import nn

from vpkit.vocabulary import PROMPT_MODES, PROMPT_TYPES, shape_of

INIT_STD = 0.01  # small start keeps tanh in its linear zone (the paper's initialisation)

# Names the paper's README uses for the same shapes; only used to suggest the right spelling.
_TYPE_HINTS = {"patch_center": "fixed_patch (is_center=True)", "patch_topleft": "fixed_patch",
               "overlay": "full", "full_overlay": "full", "pad": "padding"}

Placement = tuple[slice, slice]  # (rows, columns) of the S x S canvas


class PromptConfigError(ValueError):
    """A prompter was asked for with an unknown type/mode or an impossible size."""


class PromptStateError(ValueError):
    """A checkpoint does not fit the prompter it is loaded into. `what` is what is wrong (naming the file), `fix`
    what to do (None when the message has none), so a caller that knows more can give its own fix."""

    def __init__(self, what: str, fix: str | None = None):
        super().__init__(f"{what}; {fix}" if fix else what)
        self.what, self.fix = what, fix


class VisualPrompter(nn.Module):
    """Base class: learnable tensors placed on an ``S x S`` canvas and combined with images.

    Subclasses only say where their tensors go (``_placements``); the parameters are created
    from those placements, in that order, named as in the paper's checkpoints.
    """

    prompt_type = ""

    def __init__(self, image_size: int, mode: str, delta: float,
                 generator: torch.Generator | None = None):
        super().__init__()
        self.image_size = image_size
        self.mode = mode
        self.delta = float(delta)
        for name, (rows, cols) in self._placements().items():
            shape = (1, 3, _span(rows, image_size), _span(cols, image_size))
            theta = torch.randn(shape, generator=generator) * INIT_STD
            self.register_parameter(name, nn.Parameter(theta))

    def _placements(self) -> dict[str, Placement]:
        raise NotImplementedError

    def canvas(self) -> torch.Tensor:
        """The prompt ``delta * tanh(theta)`` on a zero ``[1, 3, S, S]`` canvas (differentiable)."""
        first = next(self.parameters())
        canvas = first.new_zeros(1, 3, self.image_size, self.image_size)
        for name, (rows, cols) in self._placements().items():
            canvas[:, :, rows, cols] = self.delta * torch.tanh(getattr(self, name))
        return canvas

    def region_mask(self) -> torch.Tensor:
        """Bool ``[1, 1, S, S]``: True where the prompt has learnable pixels."""
        mask = torch.zeros(1, 1, self.image_size, self.image_size, dtype=torch.bool,
                           device=next(self.parameters()).device)
        for rows, cols in self._placements().values():
            mask[:, :, rows, cols] = True
        return mask

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Prompt float images in [0, 1] ``[B, 3, S, S]``; returns the same shape and dtype, in [0, 1]."""
        self._check_images(images)
        prompted = self._combine(images, self.canvas())
        return prompted.clamp(0.0, 1.0).to(images.dtype)

    def _combine(self, images: torch.Tensor, prompt: torch.Tensor) -> torch.Tensor:
        if self.mode == "add":
            return images + prompt
        if self.mode == "mul":
            return images * prompt
        return images * (1.0 + prompt)  # mul_residual

    def _check_images(self, images: torch.Tensor) -> None:
        expected = (3, self.image_size, self.image_size)
        if images.ndim != 4 or tuple(images.shape[1:]) != expected:
            raise ValueError(
                f"{self.describe()} prompter expects images [B, 3, {self.image_size}, {self.image_size}], "
                f"got {list(images.shape)}; build the prompter with image_size={images.shape[-1]} "
                "or resize the images")
        if not images.is_floating_point():
            raise TypeError(f"prompter expects float images in [0, 1], got dtype {images.dtype}; "
                            "divide uint8 images by 255 first")
        device = next(self.parameters()).device
        if images.device != device:
            raise ValueError(f"prompter is on {device} but the images are on {images.device}; "
                             f"call prompter.to({str(images.device)!r})")

    def spec(self) -> dict:
        """The ``build_prompter`` arguments that rebuild this prompter (for run metadata)."""
        return {"type": self.prompt_type, "size": getattr(self, "size", None), "mode": self.mode,
                "delta": self.delta, "is_center": getattr(self, "is_center", False),
                "image_size": self.image_size}

    def describe(self) -> str:
        """Short label for tables, e.g. ``"padding 30 px, add"``."""
        return f"{self.prompt_type} {self.size} px, {self.mode}"

    def extra_repr(self) -> str:
        return f"{self.describe()}, delta={self.delta:g}, image_size={self.image_size}"


class PaddingPrompter(VisualPrompter):
    """A learnable border of ``size`` px; ``3 * 2 * size * (2S - 2 * size)`` parameters."""

    prompt_type = "padding"

    def __init__(self, size: int, image_size: int, mode: str, delta: float,
                 generator: torch.Generator | None = None):
        self.size = size
        super().__init__(image_size, mode, delta, generator)

    def _placements(self) -> dict[str, Placement]:
        s, inner = self.size, slice(self.size, self.image_size - self.size)
        return {"pad_up": (slice(0, s), slice(None)),
                "pad_down": (slice(self.image_size - s, None), slice(None)),
                "pad_left": (inner, slice(0, s)),
                "pad_right": (inner, slice(self.image_size - s, None))}


class ReplacePadPrompter(PaddingPrompter):
    """The padding border, but the image's border pixels are replaced by the prompt.

    The paper's variant: the centre keeps the image, the border shows ``clamp(p, 0, 1)``.
    """

    prompt_type = "replace_pad"

    def __init__(self, size: int, image_size: int, delta: float,
                 generator: torch.Generator | None = None):
        super().__init__(size, image_size, "replace", delta, generator)

    def _combine(self, images: torch.Tensor, prompt: torch.Tensor) -> torch.Tensor:
        return torch.where(self.region_mask(), prompt, images)

    def spec(self) -> dict:
        return {**super().spec(), "mode": "add"}  # build_prompter's accepted (ignored) mode

    def describe(self) -> str:
        return f"replace_pad {self.size} px"


class FixedPatchPrompter(VisualPrompter):
    """A learnable ``size x size`` square at the top-left corner or the centre; ``3 * size**2`` parameters."""

    prompt_type = "fixed_patch"

    def __init__(self, size: int, is_center: bool, image_size: int, mode: str, delta: float,
                 generator: torch.Generator | None = None):
        self.size = size
        self.is_center = bool(is_center)
        super().__init__(image_size, mode, delta, generator)

    def top_left(self) -> tuple[int, int]:
        """Row and column of the patch's top-left pixel (the paper's ``H//2 - S//2`` when centred)."""
        if not self.is_center:
            return 0, 0
        corner = self.image_size // 2 - self.size // 2
        return corner, corner

    def _placements(self) -> dict[str, Placement]:
        top, left = self.top_left()
        return {"patch": (slice(top, top + self.size), slice(left, left + self.size))}

    def describe(self) -> str:
        return f"{shape_of(self.prompt_type, self.is_center).label} {self.size} px, {self.mode}"


class FullPrompter(VisualPrompter):
    """A learnable prompt over the whole image; ``3 * S**2`` parameters."""

    prompt_type = "full"

    def _placements(self) -> dict[str, Placement]:
        return {"prompt": (slice(None), slice(None))}

    def describe(self) -> str:
        return f"full {self.image_size} px, {self.mode}"


def build_prompter(type: str, size: int | None = None, mode: str = "add", delta: float = 1.0,
                   is_center: bool = False, image_size: int = 448,
                   generator: torch.Generator | None = None) -> VisualPrompter:
    """Build a prompter from the paper's config vocabulary (``model.visual_prompt`` type + args).

    ``size`` is required for ``padding``, ``fixed_patch`` and ``replace_pad`` and ignored for
    ``full``; ``is_center`` is only used by ``fixed_patch``; ``replace_pad`` has no mode (leave
    ``"add"``). Parameters start as ``N(0, 1) * 0.01`` from ``generator`` (or torch's global RNG).
    """
    _check_common(type, mode, delta, image_size)
    if type == "full":
        return FullPrompter(image_size, mode, delta, generator)
    _check_size(type, size, image_size)
    if type == "padding":
        return PaddingPrompter(size, image_size, mode, delta, generator)
    if type == "fixed_patch":
        return FixedPatchPrompter(size, is_center, image_size, mode, delta, generator)
    if mode != "add":
        raise PromptConfigError(f"replace_pad replaces the border pixels and has no mode, got mode={mode!r}; "
                                "leave mode at 'add' (it is ignored) or use type='padding'")
    return ReplacePadPrompter(size, image_size, delta, generator)


PROMPTER_ARGUMENTS = ("size", "mode", "delta", "is_center", "image_size")


def prompter_from_config(prompt, generator: torch.Generator | None = None, **overrides) -> VisualPrompter:
    """The prompter a prompt config describes: a `prompt` section (vpkit.config.PromptConfig) or a prompter
    spec as a checkpoint records it (a dict; absent keys take build_prompter's defaults). `overrides` replace
    its values (e.g. image_size=the model's input size)."""
    fields = prompt if isinstance(prompt, Mapping) else vars(prompt)
    arguments = {key: fields[key] for key in PROMPTER_ARGUMENTS if key in fields} | overrides
    return build_prompter(fields["type"], generator=generator, **arguments)


def _check_common(prompt_type: str, mode: str, delta: float, image_size: int) -> None:
    if prompt_type not in PROMPT_TYPES:
        hint = f" (did you mean {_TYPE_HINTS[prompt_type]}?)" if prompt_type in _TYPE_HINTS else ""
        raise PromptConfigError(f"unknown prompt type {prompt_type!r}{hint}; choose one of {PROMPT_TYPES}")
    if mode not in PROMPT_MODES:
        raise PromptConfigError(f"unknown prompt mode {mode!r}; choose one of {PROMPT_MODES}")
    if isinstance(delta, bool) or not isinstance(delta, (int, float)) or not math.isfinite(delta) \
            or delta <= 0:
        raise PromptConfigError(f"delta must be a positive finite number, got {delta!r}")
    if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 1:
        raise PromptConfigError(f"image_size must be a positive int, got {image_size!r}")


def _check_size(prompt_type: str, size: int | None, image_size: int) -> None:
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise PromptConfigError(f"{prompt_type} needs size as a positive int (pixels), got {size!r}")
    if prompt_type == "fixed_patch" and size > image_size:
        raise PromptConfigError(f"patch size {size} does not fit {image_size} px images; "
                                f"use size <= {image_size}")
    if prompt_type in ("padding", "replace_pad") and 2 * size >= image_size:
        raise PromptConfigError(f"padding size {size} leaves no image inside {image_size} px; "
                                f"use size < {(image_size + 1) // 2}")


def _span(part: slice, length: int) -> int:
    return len(range(length)[part])


def num_trainable_parameters(prompter: nn.Module) -> int:
    """Number of scalars that require grad (52,560 for a 10 px padding at 448 px)."""
    return sum(p.numel() for p in prompter.parameters() if p.requires_grad)


AUTO_PERCENTILE = 99.0  # of |p| inside the region: a few outlying values must not set the scale for the rest


def auto_amplification(prompter: VisualPrompter) -> float:
    """The factor that shows the AUTO_PERCENTILE-th percentile of the prompt's |value| inside its region as full
    black/white (1.0 for an all-zero prompt); the largest value would leave most of a trained prompt grey."""
    with torch.no_grad():
        inside = prompter.canvas()[prompter.region_mask().expand(-1, 3, -1, -1)].abs().float().cpu()
    level = float(torch.quantile(inside, AUTO_PERCENTILE / 100.0)) if inside.numel() else 0.0
    return 1.0 / level if level > 0 else 1.0


def render_prompt(prompter: VisualPrompter, amplify: float | str = 1.0) -> np.ndarray:
    """The prompt as a uint8 ``[S, S, 3]`` image for a gallery.

    Shows ``0.5 + 0.5 * amplify * p`` clipped to [0, 1]: mid-grey is "no change", and at
    ``amplify=1`` a prompt value of -1 is black and +1 white. ``amplify="auto"`` is
    auto_amplification(prompter), which makes a freshly initialised (~0.01) prompt visible.
    Pixels outside the prompt's region are mid-grey.
    """
    with torch.no_grad():
        prompt = prompter.canvas()[0].float().cpu()
    if amplify == "auto":
        amplify = auto_amplification(prompter)
    if isinstance(amplify, bool) or not isinstance(amplify, (int, float)) or not math.isfinite(amplify) \
            or amplify <= 0:
        raise ValueError(f"amplify must be a positive number or 'auto', got {amplify!r}")
    shown = (0.5 + 0.5 * amplify * prompt).clamp(0.0, 1.0)
    return (shown.permute(1, 2, 0).numpy() * 255.0).round().astype(np.uint8)


def load_prompt_state(prompter: VisualPrompter, source, *, label: str | None = None) -> VisualPrompter:
    """Load prompt weights into ``prompter`` in place and return it.

    ``source`` is a state dict or a path to a ``.pth``/``.pt``/``.bin`` (torch) or ``.safetensors``
    file, such as the paper's ``visual_prompt.pth``. A ``visual_prompter.``/``module.`` prefix on
    every key is dropped. Raises :class:`PromptStateError` when the keys, shapes or values do not
    fit, saying what the checkpoint holds; errors name ``label`` (default: the path, or "state dict").
    """
    label = label or (str(source) if isinstance(source, (str, Path)) else "state dict")
    state = _strip_prefix(_read_state(source) if isinstance(source, (str, Path)) else source, label)
    expected = prompter.state_dict()
    if set(state) != set(expected):
        raise PromptStateError(
            f"{label}: holds {_guess_kind(state)} tensors {sorted(state)}, but the prompter is "
            f"{prompter.describe()} and expects {sorted(expected)}",
            "build the prompter with the type the checkpoint was trained with")
    for name, want in expected.items():
        _check_tensor(label, name, state[name], want, prompter)
    with torch.no_grad():
        prompter.load_state_dict({k: v.to(torch.float32) for k, v in state.items()})
    return prompter


def _read_state(path: str | Path) -> Mapping:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"prompt checkpoint not found: {path}")
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file
        try:
            return load_file(str(path), device="cpu")
        except SafetensorError as error:
            raise PromptStateError(f"{path}: not a readable safetensors file ({error}); it is damaged or "
                                   "another format") from None
    if path.suffix in (".pth", ".pt", ".bin"):
        try:
            with warnings.catch_warnings():  # torch's remarks on the pickle protocol: the file loads or is refused
                warnings.simplefilter("ignore")
                return torch.load(path, map_location="cpu", weights_only=True)
        except OSError:
            raise  # the file could not be read at all (permissions, a folder): the OS error names it
        except Exception as error:  # noqa: BLE001 - whatever the unpickler raises on a file of other bytes
            # (UnpicklingError, KeyError on an unknown opcode, IndexError, EOFError, UnicodeDecodeError, ...);
            # torch's own text here suggests loading arbitrary pickled objects, which a prompt never needs
            raise PromptStateError(
                f"{path}: not a readable checkpoint of tensors ({type(error).__name__}); the file is damaged, "
                "truncated or not a torch.save'd state dict: download the prompt again") from None
    raise PromptStateError(f"{path}: unknown checkpoint format {path.suffix!r}; "
                           "use .pth/.pt/.bin (torch.save) or .safetensors")


def _strip_prefix(state, label: str) -> dict:
    if not isinstance(state, Mapping) or not state:
        raise PromptStateError(f"{label}: expected a non-empty dict of tensors, got {type(state).__name__}")
    for prefix in ("visual_prompter.", "module."):
        if all(isinstance(k, str) and k.startswith(prefix) for k in state):
            return {k[len(prefix):]: v for k, v in state.items()}
    return dict(state)


_KEYS_BY_KIND = {"padding/replace_pad": {"pad_up", "pad_down", "pad_left", "pad_right"},
                 "fixed_patch": {"patch"}, "full": {"prompt"}}


def _guess_kind(state: Mapping) -> str:
    return next((kind for kind, keys in _KEYS_BY_KIND.items() if set(state) == keys), "unknown")


def _check_tensor(label: str, name: str, value, want: torch.Tensor, prompter: VisualPrompter) -> None:
    if not isinstance(value, torch.Tensor) or not value.is_floating_point():
        raise PromptStateError(f"{label}: {name!r} must be a float tensor, got {type(value).__name__}"
                               f"{'' if not isinstance(value, torch.Tensor) else ' ' + str(value.dtype)}")
    if value.shape != want.shape:
        raise PromptStateError(
            f"{label}: {name!r} has shape {list(value.shape)} but {prompter.describe()} at "
            f"{prompter.image_size} px expects {list(want.shape)}; the checkpoint looks trained with "
            f"{_guess_geometry(name, value.shape)}")
    if not torch.isfinite(value).all():
        raise PromptStateError(f"{label}: {name!r} contains NaN or inf values")


def _guess_geometry(name: str, shape) -> str:
    if len(shape) != 4:
        return "a different layout (expected 4-D [1, 3, H, W] tensors)"
    if name in ("pad_up", "pad_down"):
        return f"size={shape[2]}, image_size={shape[3]}"
    if name in ("pad_left", "pad_right"):
        return f"size={shape[3]}, image_size={shape[2] + 2 * shape[3]}"
    if name == "patch":
        return f"size={shape[2]}"
    return f"image_size={shape[2]}"
