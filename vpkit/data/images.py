"""Image preparation: a file -> uint8 [S, S, 3], the paper's way by default. No normalisation here:
that comes after the visual prompt is added."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

METHODS = ("resize_crop", "stretch", "pad")
# mPLUG-Owl2 / Q-Align pad with the CLIP mean colour, int(mean * 255) as their expand2square does.
PAD_COLOUR = (122, 116, 104)
PREP_VERSION = 1  # bump when the pixels any method produces change (invalidates caches)


def open_rgb(path_or_pil: str | Path | Image.Image) -> Image.Image:
    """An RGB PIL image from a path or a PIL image (palette, grey and alpha images are converted)."""
    if isinstance(path_or_pil, Image.Image):
        return path_or_pil if path_or_pil.mode == "RGB" else path_or_pil.convert("RGB")
    with Image.open(path_or_pil) as opened:
        return opened.convert("RGB")  # converts (or copies) while the file is still open


def prepare_image(path_or_pil: str | Path | Image.Image, size: int, method: str = "resize_crop") -> np.ndarray:
    """uint8 [size, size, 3] ready for the prompt.

    resize_crop: the paper's (torchvision Resize(size) + CenterCrop(size), bicubic): shorter side to
    `size`, longer side int(size * long / short), then a centred crop with torchvision's rounding.
    stretch: mPLUG-Owl2's own processor: squash to a square of the longer side, then to `size`.
    pad: Q-Align / mPLUG-Owl2 'pad': centre on a square of the CLIP mean colour, then to `size`.
    """
    if method not in METHODS:
        raise ValueError(f"unknown preparation method {method!r}; use one of {', '.join(METHODS)}")
    if int(size) <= 0:
        raise ValueError(f"size must be a positive number of pixels, got {size}")
    image = open_rgb(path_or_pil)
    if method == "resize_crop":
        out = _resize_shorter_then_crop(image, size)
    elif method == "stretch":
        out = _stretch(image, size)
    else:
        out = _pad_square(image, size)
    return np.asarray(out, dtype=np.uint8)


def _resize_shorter_then_crop(image: Image.Image, size: int) -> Image.Image:
    width, height = image.size
    short, long = min(width, height), max(width, height)
    if short != size:  # torchvision leaves the image alone when the shorter side already fits
        new_long = int(size * long / short)
        new_size = (size, new_long) if width <= height else (new_long, size)
        image = image.resize(new_size, Image.Resampling.BICUBIC)
    width, height = image.size
    top = round((height - size) / 2.0)
    left = round((width - size) / 2.0)
    return image.crop((left, top, left + size, top + size))


def _stretch(image: Image.Image, size: int) -> Image.Image:
    side = max(image.size)
    if image.size != (side, side):
        image = image.resize((side, side), Image.Resampling.BICUBIC)
    return _to_size(image, size)


def _pad_square(image: Image.Image, size: int) -> Image.Image:
    width, height = image.size
    if width != height:
        side = max(width, height)
        canvas = Image.new("RGB", (side, side), PAD_COLOUR)
        canvas.paste(image, ((side - width) // 2, (side - height) // 2))
        image = canvas
    return _to_size(image, size)


def _to_size(square: Image.Image, size: int) -> Image.Image:
    return square if square.size == (size, size) else square.resize((size, size), Image.Resampling.BICUBIC)
