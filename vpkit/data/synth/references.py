"""Reference (pristine) images for the synthetic set: crops of the photographs bundled with
scikit-image (optional extra `synth`) and procedurally generated scenes and textures."""
from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

Size = tuple[int, int]  # (width, height)

# Photographs shipped inside scikit-image's wheel (no download); grey ones are toned to give them colour.
PHOTOS = (
    "astronaut", "chelsea", "coffee", "rocket", "hubble_deep_field", "immunohistochemistry", "retina",
    "stereo_motorcycle", "camera", "moon", "coins", "brick", "grass", "gravel", "clock",
)


@dataclass(frozen=True)
class Reference:
    """A pristine image and where it came from (photo name or generator + seed)."""

    image: np.ndarray  # uint8 HxWx3
    source: str


def reference_images(n: int, size: Size = (288, 224), seed: int = 0, photos: bool = True) -> list[Reference]:
    """`n` references of `size` (W, H), deterministic for `seed`. With `photos`, up to half are crops of
    scikit-image's photographs (skipped with a warning if scikit-image is missing); the rest are
    procedural, cycling through the generators in a seeded order."""
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    width, height = int(size[0]), int(size[1])
    if width < 16 or height < 16:
        raise ValueError(f"size must be at least 16x16, got {width}x{height}")
    rng = np.random.default_rng([seed, 7])
    chosen_photos = _photo_names(rng, n // 2) if photos else []
    refs = [_photo_reference(name, (width, height), np.random.default_rng([seed, 11, i]))
            for i, name in enumerate(chosen_photos)]
    refs = [r for r in refs if r is not None]
    kinds = list(GENERATORS)
    order = [kinds[k] for k in rng.permutation(len(kinds))]
    for i in range(n - len(refs)):
        kind = order[i % len(order)]
        sub_seed = [seed, 13, i]
        pixels = GENERATORS[kind](np.random.default_rng(sub_seed), width, height)
        refs.append(Reference(_to_uint8(pixels), f"procedural:{kind} seed={seed} index={i}"))
    return [refs[k] for k in rng.permutation(len(refs))]


def _photo_names(rng: np.random.Generator, count: int) -> list[str]:
    if count == 0:
        return []
    try:
        import skimage.data  # noqa: F401  (optional extra: pip install vpkit[synth])
    except ImportError:
        warnings.warn("scikit-image is not installed (pip install 'vpkit[synth]'): using procedural "
                      "references only", stacklevel=3)
        return []
    return [PHOTOS[k] for k in rng.permutation(len(PHOTOS))[:min(count, len(PHOTOS))]]


def _photo_reference(name: str, size: Size, rng: np.random.Generator) -> Reference | None:
    import skimage.data

    try:
        pixels = getattr(skimage.data, name)()
    except (ImportError, OSError, ValueError) as exc:  # a photo that needs a download (pooch) or is missing
        warnings.warn(f"skimage.data.{name} unavailable ({exc}); a procedural image replaces it", stacklevel=4)
        return None
    if isinstance(pixels, tuple):  # stereo pairs: take the left view
        pixels = pixels[0]
    pixels = np.asarray(pixels)
    if pixels.ndim == 2:
        pixels = _tone_grey(pixels, rng)
    image = Image.fromarray(pixels[..., :3].astype(np.uint8))
    width, height = size
    zoom = max(width / image.width, height / image.height) * rng.uniform(1.0, 1.6)
    scaled = image.resize((max(width, round(image.width * zoom)), max(height, round(image.height * zoom))),
                          Image.Resampling.LANCZOS)
    left = int(rng.integers(0, scaled.width - width + 1))
    top = int(rng.integers(0, scaled.height - height + 1))
    crop = scaled.crop((left, top, left + width, top + height))
    return Reference(np.asarray(crop, dtype=np.uint8), f"photo:skimage.data.{name} crop=({left},{top}) zoom={zoom:.3f}")


def _tone_grey(grey: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Duotone a grey photograph (shadows and highlights in two random hues) so colour distortions act."""
    values = grey.astype(np.float64) / 255.0
    shadow, highlight = _palette(rng, 2, dark_first=True)
    toned = shadow[None, None] * (1 - values[..., None]) + highlight[None, None] * values[..., None]
    return _to_uint8(0.35 * values[..., None] + 0.65 * toned)


# -- procedural generators: each (rng, width, height) -> float HxWx3 in [0, 1] -------------------
def _fractal_noise(rng: np.random.Generator, height: int, width: int, beta: float = 3.0) -> np.ndarray:
    """Noise with power spectrum 1/f^beta (beta 3: soft clouds; lower: rougher), scaled to [0, 1]."""
    fy = np.fft.fftfreq(height)[:, None]
    fx = np.fft.rfftfreq(width)[None, :]
    radius = np.sqrt(fx ** 2 + fy ** 2)
    radius[0, 0] = 1.0
    spectrum = (rng.normal(size=radius.shape) + 1j * rng.normal(size=radius.shape)) / radius ** (beta / 2)
    spectrum[0, 0] = 0
    field = np.fft.irfft2(spectrum, s=(height, width))
    return (field - field.min()) / (field.max() - field.min() + 1e-12)


def _palette(rng: np.random.Generator, count: int, dark_first: bool = False) -> list[np.ndarray]:
    """Harmonious random colours: hues near a base hue, spread in lightness."""
    base = rng.random()
    colours = []
    for k in range(count):
        hue = (base + rng.normal(0, 0.08) + (0.5 if rng.random() < 0.25 else 0)) % 1.0
        lightness = (k + 0.5) / count if dark_first else rng.uniform(0.2, 0.9)
        colours.append(_hsl(hue, rng.uniform(0.35, 0.85), lightness))
    return colours


def _hsl(hue: float, saturation: float, lightness: float) -> np.ndarray:
    chroma = (1 - abs(2 * lightness - 1)) * saturation
    h6 = hue * 6
    x = chroma * (1 - abs(h6 % 2 - 1))
    rgb = [(chroma, x, 0), (x, chroma, 0), (0, chroma, x), (0, x, chroma), (x, 0, chroma), (chroma, 0, x)][int(h6) % 6]
    return np.array(rgb) + lightness - chroma / 2


def _colour_ramp(values: np.ndarray, colours: list[np.ndarray]) -> np.ndarray:
    """Map values in [0, 1] through a piecewise-linear ramp of colours."""
    stops = np.linspace(0, 1, len(colours))
    return np.stack([np.interp(values, stops, [c[i] for c in colours]) for i in range(3)], axis=-1)


def landscape(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    """Sky gradient with clouds, layered fractal ridges fading with distance, textured ground."""
    yy = np.linspace(0, 1, height)[:, None, None]
    sky_top, sky_bottom = _hsl(rng.uniform(0.5, 0.7), 0.6, 0.45), _hsl(rng.uniform(0.0, 0.15), 0.5, 0.8)
    image = sky_top * (1 - yy) + sky_bottom * yy + np.zeros((height, width, 3))
    clouds = _fractal_noise(rng, height, width, 3.4)
    image += 0.35 * np.clip(clouds - 0.55, 0, 1)[..., None]
    layers = int(rng.integers(3, 6))
    ground_hue = rng.uniform(0.05, 0.4)
    for layer in range(layers):
        depth = layer / max(layers - 1, 1)
        ridge = _fractal_noise(rng, 1, width * 2, 2.2)[0, ::2]
        horizon = height * (0.3 + 0.45 * depth) + (ridge - 0.5) * height * (0.35 - 0.2 * depth)
        below = np.arange(height)[:, None] > horizon[None, :]
        texture = _fractal_noise(rng, height, width, 2.4 + depth)
        colour = _hsl(ground_hue + rng.normal(0, 0.04), 0.45, 0.55 - 0.35 * depth)
        shade = (0.75 + 0.5 * texture)[..., None] * colour
        haze = (1 - depth) * 0.5
        shade = shade * (1 - haze) + sky_bottom * haze
        image = np.where(below[..., None], shade, image)
    return image


def clouds(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    """Fractal noise through a colour ramp, with a finer detail layer."""
    base = _fractal_noise(rng, height, width, rng.uniform(2.8, 3.6))
    detail = _fractal_noise(rng, height, width, 2.0)
    return _colour_ramp(np.clip(0.85 * base + 0.15 * detail, 0, 1), _palette(rng, 4, dark_first=True))


def still_life(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    """Shaded shapes with soft shadows on a textured backdrop."""
    backdrop = _colour_ramp(_fractal_noise(rng, height, width, 3.2), _palette(rng, 3, dark_first=True))
    canvas = Image.fromarray(_to_uint8(backdrop))
    for _ in range(int(rng.integers(6, 16))):
        colour = _palette(rng, 1)[0]
        cx, cy = rng.uniform(0, width), rng.uniform(0, height)
        radius = rng.uniform(0.05, 0.22) * min(width, height)
        box = [cx - radius, cy - radius * rng.uniform(0.6, 1.4), cx + radius, cy + radius * rng.uniform(0.6, 1.4)]
        shadow = Image.new("L", canvas.size, 0)
        offset = radius * 0.15
        _draw_shape(ImageDraw.Draw(shadow), rng, [b + offset for b in box], 110)
        canvas.paste((0, 0, 0), mask=shadow.filter(ImageFilter.GaussianBlur(radius * 0.12)))
        mask = Image.new("L", canvas.size, 0)
        _draw_shape(ImageDraw.Draw(mask), rng, box, 255)
        shading = _radial_shading(width, height, cx - radius * 0.3, cy - radius * 0.3, radius * 2.2)
        fill = Image.fromarray(_to_uint8(colour[None, None] * shading[..., None]))
        canvas.paste(fill, mask=mask.filter(ImageFilter.GaussianBlur(0.7)))
    return np.asarray(canvas, dtype=np.float64) / 255.0


def _draw_shape(draw: ImageDraw.ImageDraw, rng: np.random.Generator, box: list[float], fill: int) -> None:
    kind = rng.integers(3)
    if kind == 0:
        draw.ellipse(box, fill=fill)
    elif kind == 1:
        draw.rounded_rectangle(box, radius=(box[2] - box[0]) * 0.15, fill=fill)
    else:
        cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
        r = (box[2] - box[0]) / 2
        corners = int(rng.integers(3, 8))
        start = rng.uniform(0, 2 * math.pi)
        draw.polygon([(cx + r * math.cos(start + 2 * math.pi * k / corners),
                       cy + r * math.sin(start + 2 * math.pi * k / corners)) for k in range(corners)], fill=fill)


def _radial_shading(width: int, height: int, cx: float, cy: float, reach: float) -> np.ndarray:
    yy, xx = np.mgrid[0:height, 0:width]
    distance = np.hypot(xx - cx, yy - cy) / reach
    return np.clip(1.15 - 0.7 * distance, 0.35, 1.15)


def wood(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    """Growth rings distorted by turbulence, with fine grain."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float64)
    cx, cy = rng.uniform(-0.5, 1.5) * width, rng.uniform(-0.5, 1.5) * height
    turbulence = _fractal_noise(rng, height, width, 3.2)
    rings = np.hypot((xx - cx) * rng.uniform(0.3, 1.0), yy - cy) / (min(width, height) * rng.uniform(0.03, 0.08))
    grain = np.sin(2 * math.pi * (rings + 3.0 * turbulence)) * 0.5 + 0.5
    fine = _fractal_noise(rng, height, width, 1.8)
    hue = rng.uniform(0.04, 0.11)
    ramp = [_hsl(hue, 0.55, 0.22), _hsl(hue, 0.6, 0.42), _hsl(hue + 0.02, 0.5, 0.62)]
    return _colour_ramp(np.clip(0.8 * grain ** 1.5 + 0.2 * fine, 0, 1), ramp)


def marble(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    """Veins from a sine of position plus turbulence."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float64)
    angle = rng.uniform(0, math.pi)
    position = (xx * math.cos(angle) + yy * math.sin(angle)) / min(width, height)
    turbulence = _fractal_noise(rng, height, width, 3.2)
    veins = np.abs(np.sin(2 * math.pi * (position * rng.uniform(1.0, 2.5) + 1.5 * turbulence))) ** 0.4
    return _colour_ramp(veins, _palette(rng, 3, dark_first=True))


def pebbles(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    """Voronoi cells shaded like stones, dark mortar between them."""
    count = int(rng.integers(25, 70))
    points = rng.random((count, 2)) * [height, width]
    yy, xx = np.mgrid[0:height, 0:width]
    distances = np.sqrt((yy[..., None] - points[:, 0]) ** 2 + (xx[..., None] - points[:, 1]) ** 2)
    nearest = np.sort(distances, axis=-1)
    owner = np.argmin(distances, axis=-1)
    edge = np.clip((nearest[..., 1] - nearest[..., 0]) / 4.0, 0, 1)
    colours = np.array(_palette(rng, count))
    texture = _fractal_noise(rng, height, width, 2.4)
    dome = 1.0 - 0.5 * np.clip(nearest[..., 0] / (0.5 * math.sqrt(height * width / count)), 0, 1)
    stones = colours[owner] * (dome * (0.8 + 0.4 * texture))[..., None]
    mortar = _hsl(rng.random(), 0.1, 0.15)
    return stones * edge[..., None] + mortar * (1 - edge[..., None])


def bokeh(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    """Out-of-focus light discs behind a sharp silhouette of branches."""
    background = np.zeros((height, width, 3)) + _hsl(rng.random(), 0.4, 0.12)
    yy, xx = np.mgrid[0:height, 0:width]
    for colour in _palette(rng, int(rng.integers(20, 45))):
        cx, cy, r = rng.uniform(0, width), rng.uniform(0, height), rng.uniform(0.03, 0.12) * min(width, height)
        disc = np.clip((r - np.hypot(xx - cx, yy - cy)) / 2.0, 0, 1) * rng.uniform(0.25, 0.6)
        background = background * (1 - disc[..., None]) + colour * disc[..., None]
    silhouette = Image.new("L", (width, height), 0)
    draw = ImageDraw.Draw(silhouette)
    for _ in range(int(rng.integers(2, 5))):
        _branch(draw, rng, (rng.uniform(0, width), height), -math.pi / 2 + rng.normal(0, 0.4),
                min(width, height) * 0.35, 6.0)
    mask = np.asarray(silhouette, dtype=np.float64)[..., None] / 255.0
    return background * (1 - mask) + _hsl(rng.random(), 0.3, 0.06) * mask


def _branch(draw: ImageDraw.ImageDraw, rng: np.random.Generator, start: tuple[float, float], angle: float,
            length: float, thickness: float) -> None:
    if length < 6 or thickness < 1:
        return
    end = (start[0] + length * math.cos(angle), start[1] + length * math.sin(angle))
    draw.line([start, end], fill=255, width=max(1, int(thickness)))
    for _ in range(2):
        _branch(draw, rng, end, angle + rng.normal(0, 0.5), length * rng.uniform(0.55, 0.75), thickness * 0.7)


def fabric(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    """Woven threads with a folded, unevenly lit surface."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float64)
    warp = _fractal_noise(rng, height, width, 3.4) * rng.uniform(4, 12)
    period = rng.uniform(3, 7)
    horizontal = np.sin(2 * math.pi * (yy + warp) / period) * 0.5 + 0.5
    vertical = np.sin(2 * math.pi * (xx + warp) / period) * 0.5 + 0.5
    weave = np.where(((xx // period + yy // period) % 2) == 0, horizontal, vertical)
    folds = _fractal_noise(rng, height, width, 3.6)
    colours = _palette(rng, 2)
    threads = colours[0] * weave[..., None] + colours[1] * (1 - weave[..., None])
    return threads * (0.45 + 0.75 * folds)[..., None]


GENERATORS: dict[str, Callable[[np.random.Generator, int, int], np.ndarray]] = {
    "landscape": landscape, "clouds": clouds, "still_life": still_life, "wood": wood, "marble": marble,
    "pebbles": pebbles, "bokeh": bokeh, "fabric": fabric,
}


def _to_uint8(x: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(np.asarray(x) * 255.0), 0, 255).astype(np.uint8)
