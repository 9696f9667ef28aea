"""Pretraining of the `tiny` preset: a toy mPLUG-Owl2 that knows a little about image quality.

A frozen model with random weights knows nothing, so a prompt trained on it has nothing to adapt. The paper's
situation is a model with general quality knowledge meeting a new dataset; this reproduces it in miniature:

* the tiny architecture (`vpkit.models.tiny`, the real mPLUG-Owl2 code at toy sizes, with a 128-wide, 4-layer
  vision encoder) is trained end to end, every weight but a fixed, whitened DCT patch embedding, on generated
  images of four structural KADID types (`PRETRAIN_DISTORTIONS`: Gaussian blur, white noise, JPEG, pixelation)
  made from 300 procedural references (`PRETRAIN_REFERENCE_SEED`, no photographs): recipe `structural`. The
  other recipe (`colour`: six brightness and colour types, the 64-wide, 2-layer encoder) stays available;
* it answers the paper's question with its own language head: the loss asks the last-position logits of the
  score words to give the right quality (MSE of several score types' softmax mass against the label) and to
  put the five Q-Align level words in order (cross-entropy to a soft level target);
* the demo then evaluates it on five distortion types of related families (`DEMO_DISTORTIONS`: lens blur,
  multiplicative noise, JPEG2000, over-sharpening, jitter) and references (photographs and procedural images
  from another seed) it never saw, which is where a prompt has something to adapt.

What was measured while choosing these (learning rate, references, the whitened filters, why the demo's
gain stops where it does) is in docs/tiny_model_findings.md.
"""
from __future__ import annotations

import math
import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from vpkit.device import to_model_input
from vpkit.metrics import evaluate
from vpkit.scoring import DEFAULT_SCORE_TYPE, score_from_logits, score_indices

# Score types whose softmax mass is fitted to the label: the paper's default and the ones it names most.
FITTED_SCORE_TYPES = (DEFAULT_SCORE_TYPE, "good_vs_bad", "good_vs_poor", "fine_vs_poor",
                      "excellent+good_vs_poor+bad", "high_vs_low")
# The five Q-Align levels from best to worst and the quality each stands for.
LEVEL_WORDS = ("excellent", "good", "fair", "poor", "bad")
LEVEL_CENTRES = (1.0, 0.75, 0.5, 0.25, 0.0)
LEVEL_WIDTH = 0.12  # spread of the soft level target around the label


@dataclass(frozen=True)
class Recipe:
    """What a pretraining recipe changes: the distortion types it trains on, the unseen types it is checked on
    zero-shot, and whether the patch embedding is a fixed, whitened DCT filter bank (`whitened_patch_embedding`)."""

    distortions: str  # names of tuples in vpkit.data.synth
    unseen: str
    whitened_filters: bool
    vision_sizes: tuple[tuple[str, int], ...] = ()  # keyword arguments of vpkit.models.tiny.tiny_config


RECIPES = {
    # the shipped weights. 128 wide, 4 layers: the 64 x 2 encoder reached 0.78 held out in 20 epochs, this 0.89 in 12
    "structural": Recipe("PRETRAIN_DISTORTIONS", "DEMO_DISTORTIONS", whitened_filters=True,
                         vision_sizes=(("vision_width", 128), ("vision_layers", 4), ("vision_mlp_ratio", 4))),
    # brightness and colour types only: `--recipe colour --n-refs 200 --epochs 5`
    "colour": Recipe("COLOUR_PRETRAIN_DISTORTIONS", "COLOUR_DEMO_DISTORTIONS", whitened_filters=False),
}


@dataclass(frozen=True)
class PretrainSettings:
    """Everything that decides the shipped weights (recorded in the model card)."""

    n_refs: int = 300  # fewer are memorised (docs/tiny_model_findings.md)
    epochs: int = 12
    batch_size: int = 16
    lr: float = 2.5e-4  # 1e-3 collapses the toy ViT to the mean label (docs/tiny_model_findings.md)
    warmup_steps: int = 100
    weight_decay: float = 0.01
    level_loss_weight: float = 0.3
    seed: int = 0
    probe_loss_weight: float = 1.0
    eval_n_refs: int = 24  # references of the unseen-distortion check (the demo set's recipe, smaller)
    recipe: str = "structural"  # a key of RECIPES
    whitening_images: int = 256  # structural recipe: training images whose patches set each filter's gain


def warmup_cosine(step: int, warmup_steps: int, total_steps: int) -> float:
    """Learning-rate factor: linear warm-up over `warmup_steps`, then cosine decay to 0 at `total_steps`."""
    warmup = min(1.0, (step + 1) / max(1, warmup_steps))
    return warmup * 0.5 * (1 + math.cos(math.pi * min(step, total_steps) / total_steps))


def level_targets(labels: Tensor, centres: Tensor) -> Tensor:
    """Soft distribution over the five levels: a Gaussian bump at each label, normalised."""
    weights = torch.exp(-((labels[:, None] - centres[None, :]) ** 2) / (2 * LEVEL_WIDTH ** 2))
    return weights / weights.sum(dim=1, keepdim=True)


class PretrainingLoss:
    """MSE of several score types to the label, plus cross-entropy of the level words to a soft target."""

    def __init__(self, score_word_list: tuple[str, ...], level_weight: float):
        self.pairs = [score_indices(name, score_word_list) for name in FITTED_SCORE_TYPES]
        self.level_index = [score_word_list.index(word) for word in LEVEL_WORDS]
        self.centres = torch.tensor(LEVEL_CENTRES)
        self.level_weight = level_weight

    def __call__(self, word_logits: Tensor, labels: Tensor) -> Tensor:
        mse = sum(torch.mean((score_from_logits(word_logits, pos, neg) - labels) ** 2) for pos, neg in self.pairs)
        log_levels = torch.log_softmax(word_logits[:, self.level_index], dim=1)
        cross_entropy = -(level_targets(labels, self.centres.to(labels.device)) * log_levels).sum(dim=1).mean()
        return mse / len(self.pairs) + self.level_weight * cross_entropy


class VisionProbe:
    """An auxiliary linear head on the mean vision token, trained with the model and thrown away after.

    Through the abstractor and the language model alone, the vision encoder picks up sharpness and noise very
    slowly (the score collapses to the mean label for hundreds of steps); a direct regression target on its
    output teaches it in a few hundred steps, and the language head then learns to read those features.
    The probe is not part of the shipped model."""

    def __init__(self, model):
        width = model.config.vision.hidden_size
        self.head = torch.nn.Linear(width, 1)
        self.features: Tensor | None = None
        self.handle = model.model.vision_model.register_forward_hook(self._keep)

    def _keep(self, module, inputs, output) -> None:
        hidden = output[0] if isinstance(output, tuple) else getattr(output, "last_hidden_state", output)
        self.features = hidden.mean(dim=1)

    def loss(self, labels: Tensor) -> Tensor:
        return torch.mean((self.head(self.features.float()).squeeze(1) - labels) ** 2)

    def remove(self) -> None:
        self.handle.remove()


def dct_filter_bank(patch: int, luma: int, chroma: int) -> Tensor:
    """[luma + chroma, 3, patch, patch] 2-D DCT basis images: `luma` frequencies spread evenly by radius over the
    whole spectrum on the grey channel (R+G+B)/3, and the `chroma` lowest frequencies on the two opponent channels
    (R-G and (R+G)/2-B), alternating, so that the model keeps the mean colour and slow colour changes."""
    from scipy.fft import idctn

    grid = sorted(((u, v) for u in range(patch) for v in range(patch)), key=lambda uv: (uv[0] ** 2 + uv[1] ** 2, uv))

    def basis(u: int, v: int) -> np.ndarray:
        coefficients = np.zeros((patch, patch))
        coefficients[u, v] = 1.0
        return idctn(coefficients, norm="ortho")

    grey, red_green, blue_yellow = np.array([1, 1, 1]) / 3, np.array([1, -1, 0]) / 2, np.array([0.5, 0.5, -1]) / 2
    filters = [grey[:, None, None] * basis(*grid[int(i)]) for i in np.linspace(0, len(grid) - 1, luma)]
    for k in range(chroma):
        channel = red_green if k % 2 == 0 else blue_yellow
        filters.append(channel[:, None, None] * basis(*grid[k // 2]))
    return torch.tensor(np.stack(filters), dtype=torch.float32)


def whitened_patch_embedding(model, normalised_images: Tensor, chroma: int = 8) -> Tensor:
    """A DCT filter bank for the vision encoder's patch embedding, each filter scaled so that its response has
    unit standard deviation over the patches of `normalised_images` (model input, [N, 3, S, S]).

    Why: the pre-LayerNorm after the patch embedding divides every token by its norm. Natural and procedural
    images put most energy at low frequencies (about 1/f amplitude), so with unscaled filters the high-frequency
    responses that tell blur and noise apart end up ~200x smaller than the low-frequency ones after that norm,
    and the ViT does not learn them in thousands of steps (measured: held-out SRCC ~0 on blur alone). Whitened,
    they are as large as the rest and the encoder learns blur, noise, JPEG and pixelation in ~1,000 steps."""
    embed = model.model.vision_model.embeddings.patch_embed
    width, patch = embed.weight.shape[0], embed.weight.shape[-1]
    bank = dct_filter_bank(patch, width - chroma, chroma)
    return bank / patch_responses(normalised_images, bank).std(dim=0).clamp_min(1e-6).view(-1, 1, 1, 1)


def patch_responses(images: Tensor, filters: Tensor) -> Tensor:
    """[N * patches, K]: each filter of `filters` [K, 3, P, P] applied to each non-overlapping P x P patch of
    `images` [N, 3, S, S] (what the patch embedding computes before its position table and LayerNorm)."""
    patch = filters.shape[-1]
    batch, channels, height, _ = images.shape
    rows = height // patch
    patches = images.reshape(batch, channels, rows, patch, rows, patch).permute(0, 2, 4, 1, 3, 5)
    return patches.reshape(-1, channels * patch * patch) @ filters.flatten(1).T


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def generate_sets(work_dir: Path, settings: PretrainSettings) -> tuple[Path, Path]:
    """(pretraining set root, unseen-distortion check set root), both in the KADID layout."""
    from vpkit.data import synth

    recipe = RECIPES[settings.recipe]
    pretrain_root, unseen_root = work_dir / "pretrain", work_dir / "unseen"
    synth.generate(pretrain_root, n_refs=settings.n_refs, distortions=getattr(synth, recipe.distortions),
                   seed=settings.seed, reference_seed=synth.PRETRAIN_REFERENCE_SEED, include_photos=False)
    synth.generate(unseen_root, n_refs=settings.eval_n_refs, distortions=getattr(synth, recipe.unseen),
                   seed=settings.seed, reference_seed=synth.DEMO_REFERENCE_SEED)
    return pretrain_root, unseen_root


@torch.no_grad()
def score_split(scorer, table, split: str, batch_size: int = 64) -> dict[str, float]:
    """Metrics of the scorer's default score type on one split of a table."""
    from vpkit.data import make_loader

    loader = make_loader(table, split, scorer.image_size, batch_size, train=False, num_workers=0, progress=False)
    scores, labels = [], []
    for batch in loader:
        scores.append(scorer(batch["image"].float() / 255).cpu())
        labels.append(batch["label"])
    return evaluate(torch.cat(scores).numpy(), torch.cat(labels).numpy())


def pretrain(settings: PretrainSettings, work_dir: Path, log=print, device: str = "cpu"):
    """Train the tiny model on `device` (float32); returns (scorer with the trained model, on the CPU, and the
    report dict, which names the device it ran on)."""
    from vpkit.data import load_table, make_loader

    from .query import MPLUGOwl2Scorer
    from .tiny import build_tiny_model

    if settings.recipe not in RECIPES:
        raise ValueError(f"unknown pretraining recipe {settings.recipe!r}; use one of {', '.join(RECIPES)}")
    recipe = RECIPES[settings.recipe]
    seed_everything(settings.seed)
    torch.set_flush_denormal(True)  # denormals in the backward pass slow CPU kernels many times over
    started = time.perf_counter()
    pretrain_root, unseen_root = generate_sets(work_dir, settings)
    log(f"generated the pretraining and check sets in {time.perf_counter() - started:.0f} s")
    table = load_table("kadid", pretrain_root)
    unseen = load_table("kadid", unseen_root)

    model, tokenizer = build_tiny_model(seed=settings.seed, **dict(recipe.vision_sizes))
    scorer = MPLUGOwl2Scorer(model.to(device), tokenizer)
    model.requires_grad_(True)  # pretraining is the one place the tiny model's own weights train
    if recipe.whitened_filters:
        embed = model.model.vision_model.embeddings.patch_embed
        sample = to_model_input(next(iter(make_loader(table, "train", scorer.image_size, settings.whitening_images,
                                                      train=False, num_workers=0, progress=False)))["image"], device)
        with torch.no_grad():
            embed.weight.copy_(whitened_patch_embedding(model, scorer.normalise(sample)))
        embed.weight.requires_grad_(False)  # kept fixed: training it too measured worse (0.71 vs 0.81 held out)
    scorer.model_training_mode = True
    loss_fn = PretrainingLoss(scorer.score_word_list, settings.level_loss_weight)
    probe = VisionProbe(model)
    probe.head.to(device)
    parameters = [p for p in model.parameters() if p.requires_grad] + list(probe.head.parameters())
    optimiser = torch.optim.AdamW(parameters, lr=settings.lr, weight_decay=settings.weight_decay)
    loader = make_loader(table, "train", scorer.image_size, settings.batch_size, train=True, num_workers=0,
                         seed=settings.seed, drop_last=True, cache_dir=work_dir / "cache", progress=False)
    total_steps = settings.epochs * len(loader)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimiser, lambda step: warmup_cosine(step, settings.warmup_steps,
                                                                                     total_steps))
    history = []
    for epoch in range(settings.epochs):
        scorer.train()
        losses = []
        for batch in loader:
            labels = batch["label"].to(device).float()
            loss = loss_fn(scorer.word_logits(to_model_input(batch["image"], device)), labels)
            loss = loss + settings.probe_loss_weight * probe.loss(labels)
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            schedule.step()
            losses.append(loss.detach())
        scorer.eval()
        val = score_split(scorer, table, "val")
        epoch_loss = float(torch.stack(losses).mean())  # one synchronisation an epoch, not one a step
        history.append({"epoch": epoch + 1, "loss": epoch_loss, "val_srcc": val["srcc"],
                        "val_plcc": val["plcc"], "seconds": round(time.perf_counter() - started, 1)})
        log(f"epoch {epoch + 1}/{settings.epochs}: loss {epoch_loss:.4f}  val SRCC {val['srcc']:.3f}  "
            f"PLCC {val['plcc']:.3f}  ({time.perf_counter() - started:.0f} s)")
    probe.remove()
    model.requires_grad_(False)
    scorer.model_training_mode = False
    scorer.eval()
    report = {
        "settings": asdict(settings),
        "history": history,
        "seen_test": score_split(scorer, table, "test"),
        "unseen_zero_shot": score_split(scorer, unseen, "all"),
        "seconds": round(time.perf_counter() - started, 1),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "device": describe_device(device),
    }
    return scorer.to("cpu"), report


def describe_device(device: str) -> str:
    """'cpu' or the GPU's name, as a model card states where the weights were trained."""
    if torch.device(device).type == "cuda":
        return torch.cuda.get_device_name(torch.device(device))
    return "cpu"


def fixed_check_images(size: int) -> Tensor:
    """Four deterministic images (a procedural reference and three strong distortions of types the tiny model
    was pretrained on), float [4,3,S,S], used to record the shipped weights' scores so that any change to the
    architecture is caught."""
    from vpkit.data.synth import apply_distortion, reference_images

    reference = reference_images(1, (size + size // 4, size), seed=12345, photos=False)[0].image
    rng = np.random.default_rng(12345)
    images = [reference] + [apply_distortion(name, reference, level, rng)
                            for name, level in (("darken", 5), ("color_saturation_1", 3), ("brighten", 5))]
    return model_input(images, size)


def model_input(images: list[np.ndarray], size: int) -> Tensor:
    """uint8 HxWx3 arrays prepared as the demo prepares its images (shorter side, centre crop) to float
    [N, 3, size, size] in [0, 1]."""
    from PIL import Image

    from vpkit.data import prepare_image

    prepared = [prepare_image(Image.fromarray(image), size) for image in images]
    return torch.from_numpy(np.stack(prepared)).permute(0, 3, 1, 2).float() / 255
