"""Scores of the synthetic set: a deterministic function of distortion type, level and a measured
fidelity -- NOT human opinions.

dmos = 0.75 * curve[type][level] + 0.25 * (1 + 4 * SSIM(reference, distorted)), rounded to 2 decimals
and kept in [1, 5]. The per-type curves follow the trend of KADID-10k's published DMOS over the five
levels (read off a handful of its reference images), so a type's mildest level scores near 4.5 and
its strongest near 1.5-2.5; the SSIM term makes the score depend on how much this particular image
changed. `var` is a placeholder spread (largest mid-scale, like real ratings), not a measurement."""
from __future__ import annotations

import numpy as np
from scipy import ndimage

from .colour import luminance

CURVE_WEIGHT = 0.75

# dmos on a 1-5 scale at levels 1..5 for each KADID distortion type
SEVERITY_CURVES: dict[str, tuple[float, float, float, float, float]] = {
    "gaussian_blur": (4.6, 4.3, 2.5, 1.7, 1.2),
    "lens_blur": (3.7, 2.4, 1.6, 1.3, 1.2),
    "motion_blur": (4.7, 4.0, 2.6, 1.9, 1.4),
    "color_diffusion": (4.5, 2.7, 1.9, 1.7, 1.5),
    "color_shift": (3.8, 2.0, 1.6, 1.4, 1.3),
    "color_quantization": (4.3, 4.0, 3.6, 3.0, 2.3),
    "color_saturation_1": (3.4, 3.0, 2.7, 2.4, 1.8),
    "color_saturation_2": (4.6, 3.6, 2.9, 2.0, 1.6),
    "jpeg2000": (4.6, 4.4, 4.1, 2.6, 1.4),
    "jpeg": (4.4, 4.1, 3.8, 1.8, 1.2),
    "white_noise": (4.0, 3.4, 2.9, 2.5, 2.2),
    "white_noise_color": (4.4, 3.8, 3.1, 2.6, 2.2),
    "impulse_noise": (3.6, 2.9, 2.5, 2.1, 1.9),
    "multiplicative_noise": (4.5, 3.6, 3.1, 2.5, 2.1),
    "denoise": (3.7, 2.8, 2.1, 1.6, 1.3),
    "brighten": (4.4, 4.3, 3.9, 3.1, 2.2),
    "darken": (4.5, 4.4, 4.1, 3.4, 2.3),
    "mean_shift": (4.6, 4.5, 4.4, 4.2, 3.9),
    "jitter": (4.5, 3.9, 2.9, 1.7, 1.3),
    "non_eccentricity_patch": (4.4, 4.1, 3.8, 3.5, 3.2),
    "pixelate": (3.9, 3.0, 2.6, 2.3, 1.5),
    "quantization": (4.6, 4.2, 3.9, 3.3, 2.4),
    "color_block": (3.0, 2.6, 2.4, 2.2, 1.9),
    "high_sharpen": (3.8, 2.8, 2.2, 1.7, 1.4),
    "contrast_change": (4.4, 4.0, 3.4, 2.8, 2.1),
}


def ssim(reference: np.ndarray, distorted: np.ndarray) -> float:
    """Mean SSIM of the luma of two uint8 RGB images (7x7 uniform window, as scikit-image's default;
    Wang et al. 2004 constants)."""
    x = luminance(reference.astype(np.float32))
    y = luminance(distorted.astype(np.float32))
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2

    def mean(a: np.ndarray) -> np.ndarray:
        return ndimage.uniform_filter(a, 7, mode="reflect")

    mx, my = mean(x), mean(y)
    vx, vy, cov = mean(x * x) - mx * mx, mean(y * y) - my * my, mean(x * y) - mx * my
    ssim_map = ((2 * mx * my + c1) * (2 * cov + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))
    return float(ssim_map[3:-3, 3:-3].mean())


def synthetic_dmos(distortion: str, level: int, reference: np.ndarray, distorted: np.ndarray) -> float:
    """The documented score of one distorted image (1 = worst, 5 = best)."""
    curve = SEVERITY_CURVES[distortion][level - 1]
    fidelity = 1.0 + 4.0 * float(np.clip(ssim(reference, distorted), 0.0, 1.0))
    return round(float(np.clip(CURVE_WEIGHT * curve + (1 - CURVE_WEIGHT) * fidelity, 1.0, 5.0)), 2)


def synthetic_var(dmos: float) -> float:
    """Placeholder rating spread: 0.3 at the ends of the scale, 0.9 in the middle."""
    return round(0.3 + 0.6 * (1.0 - abs(dmos - 3.0) / 2.0), 3)
