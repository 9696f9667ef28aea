"""The reference mPLUG-Owl2 image preprocessing, reproduced with PIL + numpy (bit-exact with the original).

Used for conformance and for zero-shot scoring "as the original does"; vpkit's own data pipeline
(vpkit.data) is separate. CLIP steps: resize the shortest edge to `size` (PIL bicubic), centre-crop
`crop_size`, scale by 1/255 (float64, then float32), subtract the mean and divide by the std (float32), CHW.
The reference's `process_images` applies one of three pre-steps, chosen by `image_aspect_ratio`:
"pad" (paste on a square canvas of the mean colour), "resize" (squash to a square) or "plain" (none).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from .mplug_owl2_config import read_json_file

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
ASPECT_MODES = ("pad", "resize", "plain")


@dataclass(frozen=True)
class ReferenceImageProcessor:
    size: int = 448  # shortest edge after resizing
    crop_size: int = 448
    resample: int = Image.Resampling.BICUBIC
    image_mean: tuple[float, float, float] = CLIP_MEAN
    image_std: tuple[float, float, float] = CLIP_STD

    @classmethod
    def from_json_file(cls, path: str | Path) -> ReferenceImageProcessor:
        """Read a `preprocessor_config.json` (legacy CLIPFeatureExtractor or CLIPImageProcessor format)."""
        path = Path(path)
        data = read_json_file(path, "preprocessor_config.json not found")
        return cls(size=_edge(data.get("size", 448), "shortest_edge", path, "size"),
                   crop_size=_edge(data.get("crop_size", 448), "height", path, "crop_size"),
                   resample=int(data.get("resample", Image.Resampling.BICUBIC)),
                   image_mean=tuple(data.get("image_mean", CLIP_MEAN)),
                   image_std=tuple(data.get("image_std", CLIP_STD)))

    def __call__(self, image: Image.Image, aspect: str = "pad") -> torch.Tensor:
        """[1, 3, crop, crop] float32 model input for one PIL image."""
        if aspect not in ASPECT_MODES:
            raise ValueError(f"aspect must be one of {ASPECT_MODES}, got {aspect!r}")
        image = image.convert("RGB")
        if aspect == "pad":
            image = self.expand_to_square(image)
        elif aspect == "resize":
            edge = max(image.size)
            image = image.resize((edge, edge))  # PIL's default filter, as the reference
        return torch.from_numpy(self.clip_steps(image)).unsqueeze(0)

    def expand_to_square(self, image: Image.Image) -> Image.Image:
        """Paste onto a max(H, W) square filled with the mean colour (int(mean * 255)), centred on the short side."""
        width, height = image.size
        if width == height:
            return image
        fill = tuple(int(m * 255) for m in self.image_mean)
        canvas = Image.new(image.mode, (max(width, height),) * 2, fill)
        canvas.paste(image, (0, (width - height) // 2) if width > height else ((height - width) // 2, 0))
        return canvas

    def clip_steps(self, image: Image.Image) -> np.ndarray:
        """Resize shortest edge, centre crop, rescale, normalise; float32 CHW."""
        width, height = image.size
        short, long = min(width, height), max(width, height)
        new_long = int(self.size * long / short)
        new_size = (self.size, new_long) if width <= height else (new_long, self.size)
        pixels = np.asarray(image.resize(new_size, resample=self.resample))
        top = (pixels.shape[0] - self.crop_size) // 2
        left = (pixels.shape[1] - self.crop_size) // 2
        if top < 0 or left < 0:
            raise ValueError(f"crop {self.crop_size} exceeds the resized image {pixels.shape[1]}x{pixels.shape[0]}")
        pixels = pixels[top: top + self.crop_size, left: left + self.crop_size]
        scaled = (pixels * (1 / 255)).astype(np.float32)
        mean = np.asarray(self.image_mean, dtype=np.float32)
        std = np.asarray(self.image_std, dtype=np.float32)
        return np.ascontiguousarray(((scaled - mean) / std).transpose(2, 0, 1))


def _edge(value, key: str, path: Path, field: str) -> int:
    if isinstance(value, dict):
        if key not in value:
            raise ValueError(f"{path}: field '{field}' has no '{key}' entry")
        value = value[key]
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{path}: field '{field}' must be a positive integer, got {value!r}")
    return value
