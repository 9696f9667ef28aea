"""Pretrain the `tiny` preset and write it, with its model card, to vpkit/assets/tiny_mplug_owl2/.

    python scripts/pretrain_tiny.py                 # the shipped weights (a few minutes on 2 CPU cores)
    python scripts/pretrain_tiny.py --out /tmp/t    # somewhere else, e.g. to compare
    python scripts/pretrain_tiny.py --device cuda   # on a GPU (float32; the card names the GPU)

Deterministic for a seed on one machine and thread count (CPU float32); on a GPU close but not bit-exact.
What it does is in vpkit/models/tiny_pretrain.py, what was measured in docs/tiny_model_findings.md; the card
it writes says exactly how the weights were made.
"""
from __future__ import annotations

import argparse
import platform
import tempfile
import time
from dataclasses import fields
from pathlib import Path

import torch

from vpkit.atomic import write_json_atomic, write_text_atomic
from vpkit.data import synth
from vpkit.device import resolve_device
from vpkit.models import TINY_ASSET_DIR, save_pretrained
from vpkit.models.tiny_pretrain import RECIPES, PretrainSettings, fixed_check_images, pretrain

# What each recipe's card says it was trained on and what that leaves out.
RECIPE_DATA = {
    "colour": (("six **brightness and colour** types only (`COLOUR_PRETRAIN_DISTORTIONS`: brighten, darken, colour shift, "
               "saturation 1, colour quantisation, colour diffusion)"),
               ("It has **not** learned blur,\nnoise or compression (attempts and measurements: "
               "`docs/tiny_model_findings.md`).")),
    "structural": (("four **structural** types (`PRETRAIN_DISTORTIONS`: Gaussian blur, white noise, JPEG, "
                   "pixelation; the vision encoder's patch embedding is a fixed DCT filter bank whitened on "
                   "training patches)"),
                   ("It knows no colour or brightness\ntypes (its filters keep only the mean colour and slow colour "
                   "changes).")),
}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=TINY_ASSET_DIR, help="model folder to write")
    parser.add_argument("--device", default="cpu", help="cpu (default), cuda, cuda:N or auto")
    for field in fields(PretrainSettings):
        parser.add_argument(f"--{field.name.replace('_', '-')}", type=type(field.default), default=field.default)
    return parser.parse_args()


def run_device(report: dict) -> str:
    """Where the weights were trained, as the card says it: the GPU's name, or the CPU threads."""
    device = report.get("device", "cpu")  # reports from before GPU pretraining ran on the CPU
    return f"{report['threads']} CPU threads" if device == "cpu" else f"one {device} (float32)"


def model_card(report: dict, recorded: dict, command: str) -> str:
    s = report["settings"]
    last = report["history"][-1]
    seen, unseen = report["seen_test"], report["unseen_zero_shot"]
    recipe_name = s.get("recipe", "colour")  # reports from before recipes existed are the colour recipe's
    recipe = RECIPES[recipe_name]
    trained_on, left_out = RECIPE_DATA[recipe_name]
    unseen_names = getattr(synth, recipe.unseen)
    sizes = "".join(f", {name}={value}" for name, value in recipe.vision_sizes)
    return f"""# tiny mPLUG-Owl2 (pretrained toy)

**A toy, not a quality model.** This is the mPLUG-Owl2 architecture of vpkit (`vpkit.models.mplug_owl2`) at toy
sizes (see config.json: 224 px input, a word-level tokenizer of its own), with weights that know a little
about image quality so that the demo can show prompt tuning adapting a model, as the paper does with the 7B model.
Do not use it to judge real images.

## How it was made

Command: `{command}` (file `scripts/pretrain_tiny.py`, logic in `vpkit/models/tiny_pretrain.py`).

* Data: `vpkit.data.synth.generate` with {trained_on}, 5 levels
  each, {s['n_refs']} **procedural** reference images (reference seed `PRETRAIN_REFERENCE_SEED`, no photographs),
  288x224 px, prepared to 224x224 (shorter side, centre crop) as the demo prepares its images. Labels: the
  synthetic set's documented DMOS / 5 (a function of distortion type, level and SSIM; not human opinions).
  The split keeps references apart (80/10/10).
* Model: `vpkit.models.tiny.build_tiny_model(seed={s['seed']}{sizes})`, every weight trained (the only place vpkit trains
  a model's weights), ImageNet normalisation, the paper's question
  ("USER: <|image|>Rate the technical quality of the image. ASSISTANT:") answered at the last position.
* Loss: mean over score types {', '.join('`' + t + '`' for t in ('good+fine_vs_poor+bad', 'good_vs_bad', 'good_vs_poor', 'fine_vs_poor', 'excellent+good_vs_poor+bad', 'high_vs_low'))}
  of MSE(softmax mass of positive vs negative words, label), plus {s['level_loss_weight']} x cross-entropy of the
  five Q-Align level words (excellent, good, fair, poor, bad) to a soft target centred on the label, plus
  {s['probe_loss_weight']} x MSE of a linear probe on the mean vision token (thrown away after; it speeds up the vision
  encoder's learning).
* Optimiser: AdamW, lr {s['lr']}, weight decay {s['weight_decay']}, {s['warmup_steps']} warm-up steps then cosine
  decay, batch {s['batch_size']}, {s['epochs']} epochs, random horizontal flips, seed {s['seed']}.
* Run: {report['seconds']:.0f} s on {run_device(report)}, torch {report['torch']}, {platform.machine()}.

## What it knows (measured by the command above)

| check | SRCC | PLCC |
| --- | --- | --- |
| seen distortion types, held-out references, test split | {seen['srcc']:.3f} | {seen['plcc']:.3f} |
| **unseen** distortion types (`{recipe.unseen}`) on unseen references, zero-shot | {unseen['srcc']:.3f} | {unseen['plcc']:.3f} |

The unseen types are `{recipe.unseen}` ({', '.join(unseen_names)}): a related family of the pretraining
types, which is why the model ranks them a little. {left_out}

Last epoch: loss {last['loss']:.4f}, validation SRCC {last['val_srcc']:.3f}.
Training history and all metrics: `pretraining.json`.

## Recorded scores

`recorded_scores.json` holds the scores (paper score type) of four fixed, generated images
(`vpkit.models.tiny_pretrain.fixed_check_images`): {', '.join(f'{v:.6f}' for v in recorded['scores'])}.
`tests/test_tiny_pretrained.py` recomputes them, so a change to the architecture or the loading code cannot
silently invalidate these weights.
"""


def main() -> None:
    args = parse_args()
    settings = PretrainSettings(**{f.name: getattr(args, f.name) for f in fields(PretrainSettings)})
    device = resolve_device(args.device)
    torch.manual_seed(settings.seed)
    with tempfile.TemporaryDirectory(prefix="vpkit-pretrain-") as work:
        scorer, report = pretrain(settings, Path(work), device=device)
    out = save_pretrained(scorer.model, scorer.tokenizer, args.out)
    with torch.no_grad():
        scores = scorer(fixed_check_images(scorer.image_size)).tolist()
    recorded = {"score_type": scorer.score_type, "normalisation": scorer.normalisation, "scores": scores,
                "tolerance": 1e-4, "written": time.strftime("%Y-%m-%d")}
    write_json_atomic(out / "recorded_scores.json", recorded)
    write_json_atomic(out / "pretraining.json", report)
    command = "python scripts/pretrain_tiny.py" + "".join(
        f" --{f.name.replace('_', '-')} {getattr(settings, f.name)}" for f in fields(PretrainSettings)
        if getattr(settings, f.name) != f.default) + ("" if device == "cpu" else f" --device {args.device}")
    write_text_atomic(out / "README.md", model_card(report, recorded, command))
    print(f"wrote {out} in {report['seconds']:.0f} s: seen-test SRCC {report['seen_test']['srcc']:.3f}, "
          f"unseen zero-shot SRCC {report['unseen_zero_shot']['srcc']:.3f}")


if __name__ == "__main__":
    main()
