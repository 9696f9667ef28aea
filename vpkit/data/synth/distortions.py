"""KADID-10k's distortion types, re-implemented from the published KADID-10k / KADIS-700k recipes
(Lin, Hosu & Saupe 2019): same type numbering, names, families and, where monotone, the same five
level parameters. Every function maps a uint8 HxWx3 image, a level 1..5 and a numpy Generator to a
uint8 image of the same shape; randomness comes only from the generator."""
from __future__ import annotations

import io
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from PIL import Image, features
from scipy import ndimage, signal
from scipy.interpolate import PchipInterpolator

from .colour import hsv_to_rgb, lab_to_rgb, luminance, rgb_to_hsv, rgb_to_lab, rgb_to_ycbcr, ycbcr_to_rgb

FloatImage = np.ndarray  # float64 HxWx3 in [0, 1]
LEVELS = (1, 2, 3, 4, 5)
REFERENCE_SHORT_SIDE = 384  # KADID's images are 512x384; patch sizes scale with the short side


@dataclass(frozen=True)
class DistortionType:
    """One KADID distortion type: its number in KADID file names (I01_<id>_<level>.png), family,
    and the parameter used at each of the five levels."""

    type_id: int
    name: str
    family: str
    parameters: tuple
    apply: Callable[[FloatImage, object, np.random.Generator], FloatImage]


def _filter(x: FloatImage, kernel: np.ndarray) -> FloatImage:
    """Convolve each channel with `kernel`, replicating the borders (MATLAB imfilter 'replicate')."""
    ry, rx = kernel.shape[0] // 2, kernel.shape[1] // 2
    padded = np.pad(x, ((ry, ry), (rx, rx), (0, 0)), mode="edge")
    return signal.fftconvolve(padded, kernel[:, :, None], mode="valid", axes=(0, 1))


def _gaussian(x: np.ndarray, sigma: float, axes=(0, 1)) -> np.ndarray:
    """Gaussian blur with KADIS's kernel support, 2*ceil(2*sigma)+1 taps."""
    return ndimage.gaussian_filter(x, sigma, mode="nearest", truncate=math.ceil(2 * sigma) / sigma, axes=axes)


def _patch_size(image: FloatImage, kadid_pixels: int) -> int:
    return max(3, round(kadid_pixels * min(image.shape[:2]) / REFERENCE_SHORT_SIDE))


# -- blur -------------------------------------------------------------------------------------------
def gaussian_blur(x: FloatImage, sigma: float, rng: np.random.Generator) -> FloatImage:
    return _gaussian(x, sigma)


def _disk_kernel(radius: float, supersample: int = 8) -> np.ndarray:
    half = math.ceil(radius)
    side = 2 * half + 1
    centres = (np.arange(side * supersample) + 0.5) / supersample - half - 0.5
    yy, xx = np.meshgrid(centres, centres, indexing="ij")
    coverage = (xx ** 2 + yy ** 2 <= radius ** 2).reshape(side, supersample, side, supersample).mean(axis=(1, 3))
    return coverage / coverage.sum()


def lens_blur(x: FloatImage, radius: float, rng: np.random.Generator) -> FloatImage:
    return _filter(x, _disk_kernel(radius))


def _line_kernel(length: float, angle_degrees: float) -> np.ndarray:
    if length <= 1:
        return np.ones((1, 1))
    half = (length - 1) / 2
    size = 2 * math.ceil(half) + 1
    centre = size // 2
    kernel = np.zeros((size, size))
    steps = np.linspace(-half, half, int(length * 8) + 1)
    theta = math.radians(angle_degrees)
    for x, y in zip(centre + steps * math.cos(theta), centre - steps * math.sin(theta)):
        x0, y0 = math.floor(x), math.floor(y)
        fx, fy = x - x0, y - y0
        for dx, dy, weight in ((0, 0, (1 - fx) * (1 - fy)), (1, 0, fx * (1 - fy)),
                               (0, 1, (1 - fx) * fy), (1, 1, fx * fy)):
            if 0 <= y0 + dy < size and 0 <= x0 + dx < size:
                kernel[y0 + dy, x0 + dx] += weight
    return kernel / kernel.sum()


def motion_blur(x: FloatImage, length: float, rng: np.random.Generator) -> FloatImage:
    return _filter(x, _line_kernel(length, rng.uniform(0.0, 180.0)))


# -- colour -----------------------------------------------------------------------------------------
def color_diffusion(x: FloatImage, amount: float, rng: np.random.Generator) -> FloatImage:
    """Chroma (Lab a, b) blurred with sigma 1.5*amount+2 and scaled by amount."""
    lab = rgb_to_lab(x)
    lab[..., 1:] = _gaussian(lab[..., 1:], 1.5 * amount + 2, axes=(0, 1)) * amount
    return lab_to_rgb(lab)


def color_shift(x: FloatImage, amount: float, rng: np.random.Generator) -> FloatImage:
    """Green channel shifted by `amount` pixels in a random direction, blended in along edges."""
    gray = luminance(x)
    edges = np.hypot(np.diff(gray, axis=1, append=gray[:, -1:]), np.diff(gray, axis=0, append=gray[-1:, :]))
    edges = _gaussian(edges, 4.0, axes=(0, 1))
    if edges.max() > edges.min():
        edges = (edges - edges.min()) / (edges.max() - edges.min())
    edges = np.clip(edges, np.percentile(edges, 1), np.percentile(edges, 99))
    direction = rng.random(2)
    dy, dx = np.round(direction / np.linalg.norm(direction) * amount).astype(int)
    shifted = ndimage.shift(x[..., 1], (dy, dx), order=0, mode="nearest")
    out = x.copy()
    out[..., 1] = shifted * edges + x[..., 1] * (1 - edges)
    return out


def color_quantization(x: FloatImage, colours: int, rng: np.random.Generator) -> FloatImage:
    """Palette of `colours` colours (octree: fast) with Floyd-Steinberg dithering."""
    image = Image.fromarray(_to_uint8(x))
    quantised = image.quantize(colors=int(colours), method=Image.Quantize.FASTOCTREE,
                               dither=Image.Dither.FLOYDSTEINBERG)
    return np.asarray(quantised.convert("RGB"), dtype=np.float64) / 255.0


def color_saturation_1(x: FloatImage, factor: float, rng: np.random.Generator) -> FloatImage:
    """HSV saturation multiplied by `factor` (0: grey; negative: inverted hues)."""
    hsv = rgb_to_hsv(x)
    hsv[..., 1] *= factor
    return hsv_to_rgb(hsv)


def color_saturation_2(x: FloatImage, factor: float, rng: np.random.Generator) -> FloatImage:
    """Lab chroma multiplied by `factor` (over-saturation)."""
    lab = rgb_to_lab(x)
    lab[..., 1:] *= factor
    return lab_to_rgb(lab)


# -- compression ------------------------------------------------------------------------------------
def _codec_roundtrip(x: FloatImage, **save_args) -> FloatImage:
    buffer = io.BytesIO()
    Image.fromarray(_to_uint8(x)).save(buffer, **save_args)
    buffer.seek(0)
    with Image.open(buffer) as decoded:
        return np.asarray(decoded.convert("RGB"), dtype=np.float64) / 255.0


def jpeg2000(x: FloatImage, ratio: float, rng: np.random.Generator) -> FloatImage:
    if not features.check("jpg_2000"):
        raise RuntimeError("jpeg2000 needs Pillow built with OpenJPEG; install Pillow from PyPI wheels")
    return _codec_roundtrip(x, format="JPEG2000", quality_mode="rates", quality_layers=[float(ratio)],
                            irreversible=True)


def jpeg(x: FloatImage, quality: int, rng: np.random.Generator) -> FloatImage:
    return _codec_roundtrip(x, format="JPEG", quality=int(quality))


# -- noise ------------------------------------------------------------------------------------------
def white_noise(x: FloatImage, variance: float, rng: np.random.Generator) -> FloatImage:
    return x + rng.normal(0.0, math.sqrt(variance), x.shape)


def white_noise_color(x: FloatImage, variance: float, rng: np.random.Generator) -> FloatImage:
    """White noise added in YCbCr."""
    return ycbcr_to_rgb(rgb_to_ycbcr(x) + rng.normal(0.0, math.sqrt(variance), x.shape))


def impulse_noise(x: FloatImage, density: float, rng: np.random.Generator) -> FloatImage:
    """Salt and pepper on a fraction `density` of the channel values."""
    out = x.copy()
    hit = rng.random(x.shape) < density
    out[hit] = (rng.random(int(hit.sum())) < 0.5).astype(np.float64)
    return out


def multiplicative_noise(x: FloatImage, variance: float, rng: np.random.Generator) -> FloatImage:
    return x + x * rng.normal(0.0, math.sqrt(variance), x.shape)


def denoise(x: FloatImage, noise_and_sigma: tuple[float, float], rng: np.random.Generator) -> FloatImage:
    """White noise, then a Gaussian denoiser that trades the noise for lost detail."""
    variance, sigma = noise_and_sigma
    return _gaussian(np.clip(white_noise(x, variance, rng), 0, 1), sigma)


# -- brightness -------------------------------------------------------------------------------------
def _tone_curve(values: np.ndarray, midpoint: float) -> np.ndarray:
    """Monotone curve through (0, 0), (0.5, midpoint), (1, 1)."""
    curve = PchipInterpolator([0.0, 0.5, 1.0], [0.0, float(np.clip(midpoint, 0.02, 0.97)), 1.0])
    grid = np.linspace(0.0, 1.0, 1025)
    return np.interp(values, grid, curve(grid))  # a fine lookup table: much faster than evaluating the spline


def brighten(x: FloatImage, amount: float, rng: np.random.Generator) -> FloatImage:
    """Tone curve lifting mid-tones, 2/3 on RGB and 1/3 on Lab lightness."""
    midpoint = 0.5 + amount / 2
    lab = rgb_to_lab(x)
    lab[..., 0] = _tone_curve(lab[..., 0] / 100.0, midpoint) * 100.0
    return (2 * _tone_curve(x, midpoint) + lab_to_rgb(lab)) / 3


def darken(x: FloatImage, amount: float, rng: np.random.Generator) -> FloatImage:
    return _tone_curve(x, 0.5 - amount / 2)


def mean_shift(x: FloatImage, shift: float, rng: np.random.Generator) -> FloatImage:
    return x + shift


# -- spatial ----------------------------------------------------------------------------------------
def jitter(x: FloatImage, amount: float, rng: np.random.Generator) -> FloatImage:
    """Each pixel taken from a random neighbour up to 5*amount pixels away (offsets rounded
    stochastically, so small amounts still move some pixels by one)."""
    height, width = x.shape[:2]
    reach = 5.0 * amount
    offsets = rng.uniform(-reach, reach, (2, height, width))
    dy, dx = np.floor(offsets + rng.random(offsets.shape)).astype(int)
    rows = np.clip(np.arange(height)[:, None] + dy, 0, height - 1)
    cols = np.clip(np.arange(width)[None, :] + dx, 0, width - 1)
    return x[rows, cols]


def non_eccentricity_patch(x: FloatImage, count: int, rng: np.random.Generator) -> FloatImage:
    """`count` small patches copied onto nearby positions."""
    out = x.copy()
    size = _patch_size(x, 16)
    reach = _patch_size(x, 16)
    height, width = x.shape[:2]
    for _ in range(int(count)):
        top = int(rng.integers(reach, max(reach + 1, height - size - reach)))
        left = int(rng.integers(reach, max(reach + 1, width - size - reach)))
        patch = out[top:top + size, left:left + size].copy()
        new_top = int(np.clip(round(top + (rng.random() - 0.5) * reach), 0, height - size))
        new_left = int(np.clip(round(left + (rng.random() - 0.5) * reach), 0, width - size))
        out[new_top:new_top + size, new_left:new_left + size] = patch
    return out


def pixelate(x: FloatImage, strength: float, rng: np.random.Generator) -> FloatImage:
    """Nearest-neighbour down to a fraction 0.95 - strength**0.6 of the size and back up."""
    height, width = x.shape[:2]
    factor = 0.95 - strength ** 0.6
    small = Image.fromarray(_to_uint8(x)).resize((max(1, int(width * factor)), max(1, int(height * factor))),
                                                 Image.Resampling.NEAREST)
    return np.asarray(small.resize((width, height), Image.Resampling.NEAREST), dtype=np.float64) / 255.0


def quantization(x: FloatImage, levels: int, rng: np.random.Generator) -> FloatImage:
    """Each channel quantised to `levels` bins; a value becomes its bin's middle. The bin edges adapt to
    the grey-level distribution (half quantiles, half uniform steps), standing in for KADIS's
    multi-level Otsu thresholds without leaving huge bins in sparse tones."""
    steps = np.arange(1, levels) / levels
    inner = 0.5 * np.quantile(luminance(x), steps) + 0.5 * steps
    edges = np.concatenate([[0.0], inner, [1.0]])
    index = np.clip(np.digitize(x, edges[1:-1]), 0, levels - 1)
    return ((edges[:-1] + edges[1:]) / 2)[index]


def color_block(x: FloatImage, count: int, rng: np.random.Generator) -> FloatImage:
    """`count` solid squares of random colour."""
    out = x.copy()
    size = _patch_size(x, 32)
    height, width = x.shape[:2]
    for _ in range(int(count)):
        top = int(rng.integers(0, max(1, height - size)))
        left = int(rng.integers(0, max(1, width - size)))
        out[top:top + size, left:left + size] = rng.random(3)
    return out


# -- sharpness and contrast -------------------------------------------------------------------------
def high_sharpen(x: FloatImage, amount: float, rng: np.random.Generator) -> FloatImage:
    """Unsharp masking of Lab lightness with gain `amount`."""
    lab = rgb_to_lab(x)
    lightness = lab[..., 0]
    lab[..., 0] = np.clip(lightness + amount * (lightness - _gaussian(lightness, 3.0)), 0, 100)
    return lab_to_rgb(lab)


def contrast_change(x: FloatImage, factor: float, rng: np.random.Generator) -> FloatImage:
    """Contrast scaled by `factor` around the mean luminance."""
    mean = float(luminance(x).mean())
    return mean + (x - mean) * factor


TYPES: tuple[DistortionType, ...] = (
    # Level 1 of KADIS's Gaussian blur (0.1), motion blur (1) and saturation 2 (1) leaves the image
    # unchanged; here it is the mildest visible setting instead.
    DistortionType(1, "gaussian_blur", "blur", (0.4, 0.5, 1, 2, 5), gaussian_blur),
    DistortionType(2, "lens_blur", "blur", (1, 2, 4, 6, 8), lens_blur),
    DistortionType(3, "motion_blur", "blur", (1.5, 2, 4, 6, 10), motion_blur),
    DistortionType(4, "color_diffusion", "color", (1, 3, 6, 8, 12), color_diffusion),
    DistortionType(5, "color_shift", "color", (1, 3, 6, 8, 12), color_shift),
    DistortionType(6, "color_quantization", "color", (64, 48, 32, 16, 8), color_quantization),
    DistortionType(7, "color_saturation_1", "color", (0.4, 0.2, 0.1, 0.0, -0.4), color_saturation_1),
    DistortionType(8, "color_saturation_2", "color", (1.5, 2, 3, 6, 9), color_saturation_2),
    DistortionType(9, "jpeg2000", "compression", (16, 32, 45, 120, 170), jpeg2000),
    DistortionType(10, "jpeg", "compression", (43, 36, 24, 7, 4), jpeg),
    DistortionType(11, "white_noise", "noise", (0.001, 0.002, 0.003, 0.005, 0.01), white_noise),
    DistortionType(12, "white_noise_color", "noise", (0.0001, 0.0005, 0.001, 0.002, 0.003), white_noise_color),
    DistortionType(13, "impulse_noise", "noise", (0.001, 0.005, 0.01, 0.02, 0.03), impulse_noise),
    DistortionType(14, "multiplicative_noise", "noise", (0.001, 0.005, 0.01, 0.02, 0.05), multiplicative_noise),
    DistortionType(15, "denoise", "noise",
                   ((0.001, 0.8), (0.002, 1.1), (0.003, 1.4), (0.005, 1.8), (0.01, 2.4)), denoise),
    DistortionType(16, "brighten", "brightness_change", (0.1, 0.2, 0.4, 0.7, 1.1), brighten),
    DistortionType(17, "darken", "brightness_change", (0.05, 0.1, 0.2, 0.4, 0.8), darken),
    # KADIS uses 0, 0.08, -0.08, 0.15, -0.15; level 1 here is a small shift so no level is a no-op.
    DistortionType(18, "mean_shift", "brightness_change", (0.02, 0.08, -0.08, 0.15, -0.15), mean_shift),
    DistortionType(19, "jitter", "spatial", (0.05, 0.1, 0.2, 0.5, 1.0), jitter),
    DistortionType(20, "non_eccentricity_patch", "spatial", (20, 40, 60, 80, 100), non_eccentricity_patch),
    DistortionType(21, "pixelate", "spatial", (0.01, 0.05, 0.1, 0.2, 0.5), pixelate),
    DistortionType(22, "quantization", "spatial", (20, 16, 13, 10, 7), quantization),
    DistortionType(23, "color_block", "spatial", (2, 4, 6, 8, 10), color_block),
    DistortionType(24, "high_sharpen", "sharpness_contrast", (1, 2, 3, 6, 12), high_sharpen),
    # KADIS mixes increases and decreases; here contrast falls monotonically with the level.
    DistortionType(25, "contrast_change", "sharpness_contrast", (0.75, 0.55, 0.4, 0.28, 0.18), contrast_change),
)

TYPE_BY_NAME: dict[str, DistortionType] = {t.name: t for t in TYPES}


def _to_uint8(x: FloatImage) -> np.ndarray:
    return np.clip(np.rint(np.asarray(x) * 255.0), 0, 255).astype(np.uint8)


def apply_distortion(name: str, image: np.ndarray, level: int, rng: np.random.Generator) -> np.ndarray:
    """Distort a uint8 HxWx3 image with type `name` at `level` (1 = mildest, 5 = strongest)."""
    kind = TYPE_BY_NAME.get(name)
    if kind is None:
        raise ValueError(f"unknown distortion {name!r}; known: {', '.join(TYPE_BY_NAME)}")
    if level not in LEVELS:
        raise ValueError(f"level must be 1..5, got {level!r}")
    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected a uint8 HxWx3 image, got {image.dtype} {image.shape}")
    distorted = kind.apply(image.astype(np.float64) / 255.0, kind.parameters[level - 1], rng)
    return _to_uint8(distorted)


def _bound(name: str) -> Callable[[np.ndarray, int, np.random.Generator], np.ndarray]:
    def distort(image: np.ndarray, level: int, rng: np.random.Generator) -> np.ndarray:
        return apply_distortion(name, image, level, rng)

    distort.__name__ = name
    distort.__doc__ = f"KADID type {TYPE_BY_NAME[name].type_id:02d} ({name}): uint8 image, level 1..5, rng -> uint8."
    return distort


DISTORTIONS: dict[str, Callable[[np.ndarray, int, np.random.Generator], np.ndarray]] = {
    t.name: _bound(t.name) for t in TYPES
}
FAMILIES: dict[str, tuple[str, ...]] = {}
for _t in TYPES:
    FAMILIES[_t.family] = FAMILIES.get(_t.family, ()) + (_t.name,)

# The shipped `tiny` toy scorer is pretrained on four structural types: blur, noise, compression and pixelation
# (how a toy ViT learns them on a CPU: docs/tiny_model_findings.md). The demo evaluates it on five types of
# related families that it never saw: lens blur, multiplicative noise, JPEG2000, over-sharpening and jitter.
PRETRAIN_DISTORTIONS: tuple[str, ...] = ("gaussian_blur", "white_noise", "jpeg", "pixelate")
DEMO_DISTORTIONS: tuple[str, ...] = (
    "lens_blur", "multiplicative_noise", "jpeg2000", "high_sharpen", "jitter",
)
# The pretraining recipe `colour` (a toy that knows no blur, noise or compression): six brightness and colour
# types, checked on five other global statistics types (mean shift, saturation 2, contrast change, quantisation,
# colour block).
COLOUR_PRETRAIN_DISTORTIONS: tuple[str, ...] = (
    "brighten", "darken", "color_shift", "color_saturation_1", "color_quantization", "color_diffusion",
)
COLOUR_DEMO_DISTORTIONS: tuple[str, ...] = (
    "mean_shift", "color_saturation_2", "contrast_change", "quantization", "color_block",
)
