"""Image preparation: a file -> uint8 [S, S, 3], the paper's way by default. No normalisation here:
that comes after the visual prompt is added."""
from __future__ import annotations

import contextlib
import os
import re
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

METHODS = ("resize_crop", "stretch", "pad")
# mPLUG-Owl2 / Q-Align pad with the CLIP mean colour, int(mean * 255) as their expand2square does.
PAD_COLOUR = (122, 116, 104)
PREP_VERSION = 2  # bump when the pixels any method produces change (invalidates caches); 2: 16-bit grey scaled
# 16-bit greyscale modes: PIL's convert("RGB") clips them at 255 (a white image), so they are scaled here.
SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N")
# Modes whose numbers have no fixed range (32-bit integers, floats): accepted only when they hold 8-bit values.
UNSCALED_MODES = ("I", "F")
# What `vpkit data check` says about a mode beyond its name.
MODE_NOTES = {**{mode: "16-bit grey, scaled to 8 bits" for mode in SIXTEEN_BIT_MODES},
              "RGBA": "alpha dropped", "LA": "alpha dropped", "PA": "alpha dropped", "La": "alpha dropped",
              "RGBa": "alpha dropped", "P": "palette", "1": "1-bit", "CMYK": "converted by PIL"}


# Pillow refuses an image of more than twice Image.MAX_IMAGE_PIXELS pixels (its guard against decompression bombs)
# and warns above it. An intact large photograph needs a higher limit: this variable sets Image.MAX_IMAGE_PIXELS
# when vpkit is imported (a number of pixels, or "none" for no limit), in every process vpkit starts.
PIXEL_LIMIT_VARIABLE = "VPKIT_MAX_IMAGE_PIXELS"
# EXIF orientation (tag 0x0112): 1 is as stored; 2-8 tell a viewer to mirror and/or turn the stored pixels.
ORIENTATION_TAG = 0x0112
NAMED_NOTES = 3  # files named in a note about several; the rest are counted
TOO_LARGE = "too large"  # how a problem of an image over Pillow's limit starts (its fix differs: raise the limit)


def apply_pixel_limit() -> None:
    """Set Pillow's Image.MAX_IMAGE_PIXELS from $VPKIT_MAX_IMAGE_PIXELS, when that is set."""
    text = os.environ.get(PIXEL_LIMIT_VARIABLE, "").strip()
    if not text:
        return
    if text.lower() == "none":
        Image.MAX_IMAGE_PIXELS = None
        return
    try:
        limit = int(text.replace("_", "").replace(",", ""))
    except ValueError:
        limit = 0
    if limit < 1:
        raise ValueError(f"{PIXEL_LIMIT_VARIABLE}={text!r}: give a number of pixels (e.g. 200000000) or none")
    Image.MAX_IMAGE_PIXELS = limit


apply_pixel_limit()


class ImageError(ValueError):
    """An image file cannot be used (unreadable, or pixels of unknown range); names the file and the fix."""

    def __init__(self, message: str):
        # A DataLoader worker re-raises an error as ImageError("Caught ImageError in DataLoader worker ...
        # <traceback> ... ImageError: <message>"): keep only the message, so the user sees one line.
        if message.startswith("Caught ") and "DataLoader worker" in message.split("\n", 1)[0]:
            last = [line for line in message.splitlines() if line.strip()][-1]
            message = last.split("ImageError: ", 1)[-1]
        super().__init__(message)


def too_large(error: Image.DecompressionBombError) -> str:
    """What Pillow's refusal of a large image means, and how to raise the limit (for an intact file)."""
    found = re.search(r"\((\d+) pixels\)", str(error))
    pixels = int(found.group(1)) if found else None
    limit = 2 * Image.MAX_IMAGE_PIXELS if Image.MAX_IMAGE_PIXELS else None
    size = f"{pixels:,} pixels" if pixels else "more pixels than the limit"
    setting = f"{PIXEL_LIMIT_VARIABLE}={pixels}" if pixels else f"{PIXEL_LIMIT_VARIABLE}=<pixels>"
    return (f"{TOO_LARGE}: {size}, over Pillow's limit of {limit:,} (twice Image.MAX_IMAGE_PIXELS, its guard against "
            f"decompression bombs); if the file is intact, raise the limit: set {setting} in the environment "
            "(or none for no limit)")


@contextlib.contextmanager
def large_image_warnings_told() -> object:
    """Pillow's DecompressionBombWarning (an image over Image.MAX_IMAGE_PIXELS, read anyway) kept quiet while the
    block opens images: vpkit says it itself (`image_notes`). Enter it in the main thread around a thread pool,
    not in each thread (the warning filters are one for the whole process)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        yield


def open_rgb(path_or_pil: str | Path | Image.Image) -> Image.Image:
    """An RGB PIL image from a path or a PIL image: 8-bit modes converted by PIL (palette, grey, alpha dropped,
    CMYK), 16-bit grey scaled to 8 bits; an unreadable file or pixels of unknown range raise `ImageError`.
    The pixels are taken as stored: an EXIF orientation is not applied (as the paper's loader does)."""
    if isinstance(path_or_pil, Image.Image):
        return to_rgb(path_or_pil, "image")
    try:
        with large_image_warnings_told(), Image.open(path_or_pil) as opened:
            converted = to_rgb(opened, str(path_or_pil))  # converts while the file is still open
            return opened.copy() if converted is opened else converted
    except Image.DecompressionBombError as error:
        raise ImageError(f"{path_or_pil}: {too_large(error)}") from None
    except (OSError, SyntaxError, ValueError) as error:  # PIL's decode failures
        if isinstance(error, ImageError):
            raise
        raise ImageError(f"{path_or_pil}: cannot be read as an image ({type(error).__name__}: {error}); "
                         "replace it with an intact copy") from None


def to_rgb(image: Image.Image, name: str) -> Image.Image:
    """`image` as 8-bit RGB (see open_rgb); `name` is used in errors."""
    if image.mode == "RGB":
        return image
    if image.mode in SIXTEEN_BIT_MODES:
        wide = np.asarray(image, dtype=np.uint32)
        return Image.fromarray(((wide * 255 + 32767) // 65535).astype(np.uint8), "L").convert("RGB")
    if image.mode in UNSCALED_MODES:
        values = np.asarray(image)
        if values.size and (values.min() < 0 or values.max() > 255 or not np.all(values == np.round(values))):
            kind = "floating-point" if image.mode == "F" else "32-bit integer"
            raise ImageError(f"{name}: {kind} pixels (PIL mode {image.mode}, values {values.min():g} to "
                             f"{values.max():g}) have no fixed range to map to 8 bits; save it as an 8- or 16-bit "
                             "image")
        return Image.fromarray(values.astype(np.uint8), "L").convert("RGB")
    for route in ((), ("RGBA",), ("LA",)):  # some modes PIL converts only by way of another (La via LA)
        try:
            for mode in route:
                image = image.convert(mode)
            return image.convert("RGB")
        except ValueError:
            continue
    raise ImageError(f"{name}: PIL mode {image.mode} cannot be converted to RGB; save it as an 8-bit RGB image")


def image_problem(path: str | Path, *, full: bool) -> tuple[str | None, str | None]:
    """(PIL mode, None) for an image file vpkit can use; (mode or None, what is wrong) otherwise: missing, does
    not decode, or pixels `to_rgb` refuses (floats or 32-bit integers beyond 8-bit values).

    Every byte is read either way, so truncation shows: JPEGs are decoded at 1/8 scale. `full=False` is the
    fast check before training: PNGs are checked chunk by chunk (CRC) without inflating, unless their mode
    needs their values looked at. `full=True` (`vpkit data check`) inflates them too.
    """
    mode = None
    try:
        with Image.open(path) as image:
            mode = image.mode
            if image.format == "PNG" and not full and mode not in UNSCALED_MODES:
                image.verify()
            else:
                if image.format == "JPEG":
                    image.draft("RGB", (max(1, image.width // 8), max(1, image.height // 8)))
                image.load()
                if mode in UNSCALED_MODES:
                    to_rgb(image, str(path))  # refuses pixels of unknown range
    except FileNotFoundError:
        return None, "missing"
    except ImageError as error:
        return mode, str(error).removeprefix(f"{path}: ")
    except Image.DecompressionBombError as error:
        return mode, too_large(error)
    except (OSError, SyntaxError, ValueError) as error:  # PIL's decode failures
        return mode, f"{type(error).__name__}: {error}"
    return mode, None


@dataclass(frozen=True)
class ImageNote:
    """Something about a usable image that the user should know: `kind` "orientation" (an EXIF rotation vpkit
    does not apply) or "large" (over Image.MAX_IMAGE_PIXELS, read anyway); `detail` says how much."""

    path: str
    kind: str
    detail: str


def image_notes(path: str | Path) -> list[ImageNote]:
    """Notes on one image file from its header (nothing decoded; none for a file that does not open). Call it inside
    `large_image_warnings_told`."""
    try:
        with Image.open(path) as image:
            notes = []
            orientation = image.getexif().get(ORIENTATION_TAG, 1)
            if orientation not in (None, 1):
                notes.append(ImageNote(str(path), "orientation", f"orientation {orientation}"))
            pixels = image.width * image.height
            if Image.MAX_IMAGE_PIXELS and pixels > Image.MAX_IMAGE_PIXELS:
                notes.append(ImageNote(str(path), "large", f"{pixels / 1e6:.1f} megapixels"))
            return notes
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError):
        return []  # image_problem says what is wrong with it


def describe_notes(notes: list[ImageNote]) -> list[str]:
    """One line per kind of note: how many images, the first few by name, what vpkit does and what to do."""
    lines = []
    for kind in ("orientation", "large"):
        found = [note for note in notes if note.kind == kind]
        if not found:
            continue
        named = ", ".join(f"{note.path} ({note.detail})" for note in found[:NAMED_NOTES])
        more = f" and {len(found) - NAMED_NOTES} more" if len(found) > NAMED_NOTES else ""
        if kind == "orientation":
            lines.append(f"{len(found)} image(s) carry an EXIF orientation that vpkit ignores: {named}{more}; their "
                         "pixels are used as stored, as the paper's loader does, while viewers show them turned or "
                         "mirrored; to rate them as seen, save them upright (e.g. PIL.ImageOps.exif_transpose)")
        else:
            lines.append(f"{len(found)} image(s) are over Pillow's Image.MAX_IMAGE_PIXELS ({Image.MAX_IMAGE_PIXELS:,} "
                         f"pixels) and were read anyway: {named}{more}; images over twice that are refused "
                         f"(set {PIXEL_LIMIT_VARIABLE} to a larger number of pixels for intact large files)")
    return lines


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
