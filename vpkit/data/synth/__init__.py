"""A generated KADID-style demo dataset: KADID-10k's distortion types applied to photographs from
scikit-image and procedural images, with documented synthetic scores (not human opinions).

    from vpkit.data.synth import generate, DEMO_DISTORTIONS
    generate("demo_data", distortions=DEMO_DISTORTIONS)   # -> demo_data/kadid10k/
"""
from .distortions import (
    COLOUR_DEMO_DISTORTIONS,
    COLOUR_PRETRAIN_DISTORTIONS,
    DEMO_DISTORTIONS,
    DISTORTIONS,
    FAMILIES,
    LEVELS,
    PRETRAIN_DISTORTIONS,
    TYPE_BY_NAME,
    TYPES,
    DistortionType,
    apply_distortion,
)
from .generate import (
    DEFAULT_N_REFS,
    DEFAULT_SIZE,
    DEMO_REFERENCE_SEED,
    PRETRAIN_REFERENCE_SEED,
    SMALL_N_REFS,
    SPLIT_FRACTIONS,
    generate,
)
from .references import GENERATORS, PHOTOS, Reference, reference_images
from .scores import SEVERITY_CURVES, ssim, synthetic_dmos, synthetic_var

__all__ = [
    "COLOUR_DEMO_DISTORTIONS", "COLOUR_PRETRAIN_DISTORTIONS", "DEFAULT_N_REFS", "DEFAULT_SIZE", "DEMO_DISTORTIONS",
    "DEMO_REFERENCE_SEED", "DISTORTIONS", "FAMILIES", "GENERATORS", "LEVELS", "PHOTOS", "PRETRAIN_DISTORTIONS", "PRETRAIN_REFERENCE_SEED", "SEVERITY_CURVES",
    "SMALL_N_REFS", "SPLIT_FRACTIONS", "TYPES", "TYPE_BY_NAME", "DistortionType", "Reference",
    "apply_distortion", "generate", "reference_images", "ssim", "synthetic_dmos", "synthetic_var",
]
