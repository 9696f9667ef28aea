"""Colour-space conversions on float RGB images in [0, 1] (H, W, 3), sRGB with a D65 white."""
from __future__ import annotations

import numpy as np

_RGB_TO_XYZ = np.array([[0.412453, 0.357580, 0.180423],
                        [0.212671, 0.715160, 0.072169],
                        [0.019334, 0.119193, 0.950227]], dtype=np.float64)
_XYZ_TO_RGB = np.linalg.inv(_RGB_TO_XYZ)
_WHITE = np.array([0.950456, 1.0, 1.088754])


def rgb_to_lab(rgb: np.ndarray) -> np.ndarray:
    """sRGB in [0, 1] -> CIE Lab (L in [0, 100]); computed in float32 for speed."""
    rgb = np.asarray(rgb, dtype=np.float32)
    linear = np.where(rgb > 0.04045, ((rgb + 0.055) / 1.055) ** 2.4, rgb / 12.92)
    xyz = linear @ (_RGB_TO_XYZ.T / _WHITE).astype(np.float32)
    f = np.where(xyz > 0.008856, np.cbrt(xyz), 7.787 * xyz + 16.0 / 116.0)
    lightness = 116.0 * f[..., 1] - 16.0
    a = 500.0 * (f[..., 0] - f[..., 1])
    b = 200.0 * (f[..., 1] - f[..., 2])
    return np.stack([lightness, a, b], axis=-1)


def lab_to_rgb(lab: np.ndarray) -> np.ndarray:
    """CIE Lab -> sRGB, clipped to [0, 1]; computed in float32 for speed."""
    lab = np.asarray(lab, dtype=np.float32)
    fy = (lab[..., 0] + 16.0) / 116.0
    f = np.stack([fy + lab[..., 1] / 500.0, fy, fy - lab[..., 2] / 200.0], axis=-1)
    xyz = np.where(f > 0.206893, f * f * f, (f - 16.0 / 116.0) / 7.787)
    linear = np.clip(xyz @ (_WHITE[:, None] * _XYZ_TO_RGB.T).astype(np.float32), 0.0, None)
    rgb = np.where(linear > 0.0031308, 1.055 * linear ** (1 / 2.4) - 0.055, 12.92 * linear)
    return np.clip(rgb, 0.0, 1.0)


def rgb_to_hsv(rgb: np.ndarray) -> np.ndarray:
    """RGB -> HSV, all channels in [0, 1]."""
    value = rgb.max(axis=-1)
    spread = value - rgb.min(axis=-1)
    saturation = np.where(value > 0, spread / np.maximum(value, 1e-12), 0.0)
    safe = np.maximum(spread, 1e-12)
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    hue = np.where(value == r, (g - b) / safe, np.where(value == g, 2.0 + (b - r) / safe, 4.0 + (r - g) / safe))
    hue = np.where(spread > 0, (hue / 6.0) % 1.0, 0.0)
    return np.stack([hue, saturation, value], axis=-1)


def hsv_to_rgb(hsv: np.ndarray) -> np.ndarray:
    """HSV -> RGB, clipped to [0, 1]; saturation outside [0, 1] is allowed (it inverts or overshoots)."""
    hue, saturation, value = hsv[..., 0] * 6.0, hsv[..., 1], hsv[..., 2]
    sector = np.floor(hue).astype(int) % 6
    frac = hue - np.floor(hue)
    p = value * (1 - saturation)
    q = value * (1 - saturation * frac)
    t = value * (1 - saturation * (1 - frac))
    choices = [(value, t, p), (q, value, p), (p, value, t), (p, q, value), (t, p, value), (value, p, q)]
    channels = [np.select([sector == k for k in range(6)], [c[i] for c in choices]) for i in range(3)]
    return np.clip(np.stack(channels, axis=-1), 0.0, 1.0)


_YCBCR = np.array([[0.299, 0.587, 0.114], [-0.168736, -0.331264, 0.5], [0.5, -0.418688, -0.081312]])


def rgb_to_ycbcr(rgb: np.ndarray) -> np.ndarray:
    """RGB -> YCbCr (JPEG convention, all in [0, 1] with chroma centred on 0.5)."""
    out = rgb @ _YCBCR.T
    out[..., 1:] += 0.5
    return out


def ycbcr_to_rgb(ycc: np.ndarray) -> np.ndarray:
    """YCbCr -> RGB (not clipped)."""
    shifted = ycc.copy()
    shifted[..., 1:] -= 0.5
    return shifted @ np.linalg.inv(_YCBCR).T


def luminance(rgb: np.ndarray) -> np.ndarray:
    """Rec. 601 luma of an RGB image (in the image's float precision)."""
    return rgb @ np.array([0.299, 0.587, 0.114], dtype=rgb.dtype if rgb.dtype.kind == "f" else np.float64)
