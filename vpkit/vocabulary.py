"""The paper's prompt vocabulary and every name each term goes by, so that configs, experiment names, tables,
figures and the command line say the same thing. No torch here: the command line reads it to build its parser.

Prompt types and modes are the paper's config values (vpkit.prompters builds them). A shape is where a prompt
sits (its `position`): the paper's 33 experiments use four, each one prompt type, the fixed patch either at
the centre or at the top-left corner. Spelling: identifiers keep the paper's "center" (its config key
is_center, its folder names); text written for people says "centre". Datasets and their order are
vpkit.data.specs.DATASETS.
"""
from __future__ import annotations

from dataclasses import dataclass

PROMPT_TYPES = ("padding", "fixed_patch", "full", "replace_pad")
PROMPT_MODES = ("add", "mul", "mul_residual")


@dataclass(frozen=True)
class PromptShape:
    """One of the paper's prompt shapes and its names."""

    position: str  # "border", "center", "top_left" or "whole": PaperExperiment.position
    prompt_type: str  # the vpkit.prompters type that draws it
    is_center: bool
    label: str  # vpkit's tables, experiment list and figure titles, e.g. "centre patch 30 px"
    paper_title: str  # the paper's row name (its "Performance Across Visual Prompt Types" table)
    name_part: str  # in vpkit's experiment names: exp_07_kadid_center_patch_10px_add
    paper_name_part: str  # in the paper's experiment folder names, {size} filled in: patch_center_10px


SHAPES: dict[str, PromptShape] = {
    shape.position: shape
    for shape in (
        PromptShape("border", "padding", False, "padding", "Padding", "padding", "padding_{size}px"),
        PromptShape("center", "fixed_patch", True, "centre patch", "Fixed Patch (Center)", "center_patch",
                    "patch_center_{size}px"),
        PromptShape("top_left", "fixed_patch", False, "top-left patch", "Fixed Patch (Top-Left)", "topleft_patch",
                    "patch_topLeft_{size}px"),
        PromptShape("whole", "full", False, "full", "Full Overlay", "full", "fullOverlay"),
    )
}
POSITIONS = tuple(SHAPES)


def shape_of(prompt_type: str, is_center: bool = False) -> PromptShape | None:
    """The paper's shape a prompt of `prompt_type` draws (None for replace_pad, which is not one of them)."""
    for shape in SHAPES.values():
        if shape.prompt_type == prompt_type and (prompt_type != "fixed_patch" or shape.is_center == bool(is_center)):
            return shape
    return None
