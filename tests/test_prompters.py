"""vpkit.prompters: shapes, parameter counts, modes, gradients, rendering and the paper's checkpoints."""
import numpy as np
import pytest
import torch
from _messages import raises_one_line
from safetensors.torch import save_file

from vpkit.prompters import (
    PROMPT_MODES,
    PROMPT_TYPES,
    PromptConfigError,
    PromptStateError,
    auto_amplification,
    build_prompter,
    load_prompt_state,
    num_trainable_parameters,
    render_prompt,
)

SMALL = 32  # image size for behaviour tests; the 448 px counts are checked separately

# every (type, mode) the factory accepts; replace_pad has no mode of its own
COMBINATIONS = [(t, m) for t in PROMPT_TYPES for m in PROMPT_MODES if t != "replace_pad" or m == "add"]


def _build(prompt_type, mode="add", size=5, **kwargs):
    kwargs.setdefault("image_size", SMALL)
    return build_prompter(prompt_type, size=size, mode=mode, **kwargs)


def _images(batch=2, size=SMALL, seed=0):
    return torch.rand(batch, 3, size, size, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("prompt_type, size, is_center, expected", [
    ("padding", 10, False, 52_560),
    ("padding", 30, False, 150_480),
    ("fixed_patch", 10, True, 300),
    ("fixed_patch", 10, False, 300),
    ("fixed_patch", 30, True, 2_700),
    ("full", None, False, 602_112),
    ("replace_pad", 30, False, 150_480),
])
def test_parameter_counts_at_448(prompt_type, size, is_center, expected):
    prompter = build_prompter(prompt_type, size=size, is_center=is_center, image_size=448)
    assert num_trainable_parameters(prompter) == expected


@pytest.mark.parametrize("prompt_type, size, shapes", [
    ("padding", 30, {"pad_up": [1, 3, 30, 448], "pad_down": [1, 3, 30, 448],
                     "pad_left": [1, 3, 388, 30], "pad_right": [1, 3, 388, 30]}),
    ("replace_pad", 10, {"pad_up": [1, 3, 10, 448], "pad_down": [1, 3, 10, 448],
                         "pad_left": [1, 3, 428, 10], "pad_right": [1, 3, 428, 10]}),
    ("fixed_patch", 30, {"patch": [1, 3, 30, 30]}),
    ("full", 30, {"prompt": [1, 3, 448, 448]}),  # the paper's full configs carry an unused size: 30
])
def test_state_dict_uses_the_paper_names_and_shapes(prompt_type, size, shapes):
    state = build_prompter(prompt_type, size=size, image_size=448).state_dict()
    assert {k: list(v.shape) for k, v in state.items()} == shapes


def test_initialisation_is_small_gaussian_and_reproducible():
    theta = build_prompter("full", image_size=448).prompt.detach()
    assert abs(theta.mean().item()) < 1e-4
    assert theta.std().item() == pytest.approx(0.01, rel=0.02)
    first = build_prompter("padding", size=3, image_size=SMALL, generator=torch.Generator().manual_seed(7))
    again = build_prompter("padding", size=3, image_size=SMALL, generator=torch.Generator().manual_seed(7))
    for name, value in first.state_dict().items():
        assert torch.equal(value, again.state_dict()[name])


@pytest.mark.parametrize("prompt_type, mode", COMBINATIONS)
def test_forward_shape_dtype_and_clamping(prompt_type, mode):
    prompter = _build(prompt_type, mode, delta=3.0)
    with torch.no_grad():
        for theta in prompter.parameters():
            theta.normal_(0.0, 2.0)  # prompt values well beyond [-1, 1]
    images = _images()
    out = prompter(images)
    assert out.shape == images.shape and out.dtype == images.dtype
    assert out.min() >= 0.0 and out.max() <= 1.0
    assert (out == 0.0).any() and (out == 1.0).any()  # the clamp was actually needed


@pytest.mark.parametrize("prompt_type, mode", COMBINATIONS)
def test_gradients_reach_every_theta_and_only_the_prompt_region(prompt_type, mode):
    prompter = _build(prompt_type, mode)
    images = _images()
    weights = torch.rand(images.shape, generator=torch.Generator().manual_seed(1))
    (prompter(images) * weights).sum().backward()
    for name, theta in prompter.named_parameters():
        assert theta.grad is not None and theta.grad.abs().sum() > 0, name
    assert images.grad is None and not list(prompter.buffers())

    outside = ~prompter.region_mask().expand_as(images)
    if outside.any():
        prompter.zero_grad()
        prompter(images)[outside].sum().backward()
        for name, theta in prompter.named_parameters():
            assert theta.grad is None or theta.grad.abs().sum() == 0, name


def test_frozen_parameters_are_not_counted():
    prompter = _build("padding")
    prompter.pad_up.requires_grad_(False)
    assert num_trainable_parameters(prompter) == sum(p.numel() for p in prompter.parameters()) - 3 * 5 * SMALL


@pytest.mark.parametrize("prompt_type, mode", COMBINATIONS)
def test_modes_follow_their_formulas(prompt_type, mode):
    prompter = _build(prompt_type, mode, delta=0.5)
    images = _images()
    with torch.no_grad():
        prompt = prompter.canvas()
        combined = {"add": images + prompt, "mul": images * prompt, "mul_residual": images * (1 + prompt)}
        expected = combined[mode]
        if prompt_type == "replace_pad":
            expected = torch.where(prompter.region_mask(), prompt, images)
        torch.testing.assert_close(prompter(images), expected.clamp(0, 1))


def test_padding_canvas_places_each_side():
    s, n = 4, SMALL
    prompter = _build("padding", size=s, delta=0.7)
    with torch.no_grad():
        canvas = prompter.canvas()
        side = {k: 0.7 * torch.tanh(v) for k, v in prompter.state_dict().items()}
    torch.testing.assert_close(canvas[..., :s, :], side["pad_up"])
    torch.testing.assert_close(canvas[..., n - s:, :], side["pad_down"])
    torch.testing.assert_close(canvas[..., s:n - s, :s], side["pad_left"])
    torch.testing.assert_close(canvas[..., s:n - s, n - s:], side["pad_right"])
    assert torch.all(canvas[..., s:n - s, s:n - s] == 0)


@pytest.mark.parametrize("image_size, size, corner",
                         [(32, 5, 14), (33, 4, 14), (448, 30, 209), (448, 10, 219)])
def test_centre_patch_top_left_is_half_image_minus_half_patch(image_size, size, corner):
    prompter = build_prompter("fixed_patch", size=size, is_center=True, image_size=image_size)
    assert prompter.top_left() == (corner, corner)
    rows, cols = torch.nonzero(prompter.region_mask()[0, 0], as_tuple=True)
    last = corner + size - 1
    assert (rows.min(), rows.max(), cols.min(), cols.max()) == (corner, last, corner, last)


def test_top_left_patch_sits_at_the_origin():
    prompter = _build("fixed_patch", size=6, is_center=False)
    assert prompter.top_left() == (0, 0)
    assert prompter.region_mask()[0, 0, :6, :6].all() and prompter.region_mask().sum() == 36


@pytest.mark.parametrize("prompt_type", ["padding", "fixed_patch"])
def test_paper_mul_blacks_out_the_image_outside_the_prompt(prompt_type):
    images = _images()
    outside = ~_build(prompt_type).region_mask().expand_as(images)
    assert torch.all(_build(prompt_type, "mul")(images)[outside] == 0)


@pytest.mark.parametrize("prompt_type", ["padding", "fixed_patch"])
def test_mul_residual_keeps_the_image_outside_the_prompt(prompt_type):
    images = _images()
    prompter = _build(prompt_type, "mul_residual")
    outside = ~prompter.region_mask().expand_as(images)
    assert torch.equal(prompter(images)[outside], images[outside])
    inside = ~outside
    assert not torch.equal(prompter(images)[inside], images[inside])


def test_replace_pad_keeps_the_centre_and_shows_the_prompt_on_the_border():
    images = _images()
    prompter = _build("replace_pad", size=3)
    out = prompter(images).detach()
    torch.testing.assert_close(out[..., 3:-3, 3:-3], images[..., 3:-3, 3:-3])
    border = prompter.region_mask().expand_as(images)
    expected = prompter.canvas().detach().expand_as(images).clamp(0, 1)
    torch.testing.assert_close(out[border], expected[border])


def test_half_precision_images_keep_their_dtype():
    images = _images().to(torch.bfloat16)
    assert _build("padding")(images).dtype == torch.bfloat16


def _paper_state(prompt_type, size, image_size, seed=3):
    """Tensors named and shaped like the paper's visual_prompt.pth, written independently of vpkit."""
    gen = torch.Generator().manual_seed(seed)
    inner = image_size - 2 * size
    shapes = {"padding": {"pad_up": (1, 3, size, image_size), "pad_down": (1, 3, size, image_size),
                          "pad_left": (1, 3, inner, size), "pad_right": (1, 3, inner, size)},
              "fixed_patch": {"patch": (1, 3, size, size)},
              "full": {"prompt": (1, 3, image_size, image_size)}}[prompt_type]
    return {k: torch.randn(shape, generator=gen) for k, shape in shapes.items()}


@pytest.mark.parametrize("prompt_type", ["padding", "fixed_patch", "full"])
@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_loading_a_paper_checkpoint_file(tmp_path, prompt_type, suffix):
    state = _paper_state(prompt_type, 4, SMALL)
    path = tmp_path / f"visual_prompt{suffix}"
    torch.save(state, path) if suffix == ".pth" else save_file(state, str(path))
    prompter = load_prompt_state(_build(prompt_type, size=4, is_center=True), path)
    for name, value in state.items():
        assert torch.equal(prompter.state_dict()[name], value)


def test_loading_a_dict_with_a_module_prefix_and_half_precision():
    state = {f"visual_prompter.{k}": v.half() for k, v in _paper_state("padding", 4, SMALL).items()}
    prompter = load_prompt_state(_build("replace_pad", size=4), state)
    assert prompter.pad_left.dtype == torch.float32
    torch.testing.assert_close(prompter.pad_left.detach(), state["visual_prompter.pad_left"].float())


def test_loaded_prompt_changes_the_output_as_expected():
    state = _paper_state("fixed_patch", 4, SMALL)
    prompter = load_prompt_state(_build("fixed_patch", size=4, is_center=False), state)
    images = _images()
    expected = images.clone()
    expected[..., :4, :4] = (expected[..., :4, :4] + torch.tanh(state["patch"])).clamp(0, 1)
    torch.testing.assert_close(prompter(images).detach(), expected)


def test_loading_another_prompt_type_names_what_the_checkpoint_holds():
    with raises_one_line(PromptStateError, names=("fixed_patch", "padding")):
        load_prompt_state(_build("padding"), _paper_state("fixed_patch", 5, SMALL))


def test_loading_another_size_names_the_trained_size():
    with raises_one_line(PromptStateError, names=("'pad_up'", "[1, 3, 10, 448]", "size=10", "image_size=448")):
        load_prompt_state(build_prompter("padding", size=30), _paper_state("padding", 10, 448))
    with raises_one_line(PromptStateError, names=("image_size=32",)):
        load_prompt_state(build_prompter("full", image_size=448), _paper_state("full", 0, SMALL))


def test_loading_rejects_bad_values_and_files(tmp_path):
    state = _paper_state("fixed_patch", 5, SMALL)
    state["patch"][0, 0, 0, 0] = float("nan")
    with raises_one_line(PromptStateError, names=("'patch'", "NaN"), fix=False):  # values, not a user's file
        load_prompt_state(_build("fixed_patch"), state)
    with raises_one_line(PromptStateError, names=("'patch'", "int64")):
        load_prompt_state(_build("fixed_patch"), {"patch": torch.zeros(1, 3, 5, 5, dtype=torch.int64)})
    with raises_one_line(FileNotFoundError, names=(tmp_path / "missing.pth",), fix=False):
        load_prompt_state(_build("fixed_patch"), tmp_path / "missing.pth")
    (tmp_path / "prompt.npz").write_bytes(b"")
    with raises_one_line(PromptStateError, names=(tmp_path / "prompt.npz", ".safetensors")):
        load_prompt_state(_build("fixed_patch"), tmp_path / "prompt.npz")


@pytest.mark.parametrize("kwargs, names", [  # the field at fault and the value given or the ones allowed
    ({"type": "overlay"}, ("'overlay'", "full")),
    ({"type": "padding", "size": 5, "mode": "multiply"}, ("'multiply'", "add")),
    ({"type": "padding"}, ("padding", "size")),
    ({"type": "padding", "size": 16, "image_size": 32}, ("16", "32")),
    ({"type": "fixed_patch", "size": 33, "image_size": 32}, ("33", "32")),
    ({"type": "replace_pad", "size": 5, "mode": "mul"}, ("replace_pad", "mode")),
    ({"type": "full", "delta": 0.0}, ("delta",)),
    ({"type": "full", "image_size": 0}, ("image_size",)),
])
def test_bad_configuration_is_refused(kwargs, names):
    with raises_one_line(PromptConfigError, names=names):
        build_prompter(**kwargs)


def test_images_of_the_wrong_size_or_dtype_are_refused():
    prompter = _build("padding")
    with raises_one_line(ValueError, names=("64", str(SMALL))):
        prompter(torch.rand(1, 3, 64, 64))
    with raises_one_line(TypeError, names=("uint8",)):
        prompter(torch.zeros(1, 3, SMALL, SMALL, dtype=torch.uint8))


def test_render_prompt_maps_values_around_mid_grey():
    prompter = _build("fixed_patch", size=4, is_center=False)
    with torch.no_grad():
        prompter.patch.fill_(0.0)
        prompter.patch[0, 0, 0, 0] = torch.atanh(torch.tensor(0.5))
        prompter.patch[0, 1, 0, 0] = torch.atanh(torch.tensor(-0.02))
    image = render_prompt(prompter)
    assert image.shape == (SMALL, SMALL, 3) and image.dtype == np.uint8
    assert image[10, 10].tolist() == [128, 128, 128]  # outside the patch: "no change"
    assert image[0, 0, 0] == round(0.75 * 255) and image[0, 0, 1] == round(0.49 * 255)
    auto = render_prompt(prompter, amplify="auto")
    assert (auto == render_prompt(prompter, amplify=auto_amplification(prompter))).all()
    with raises_one_line(ValueError, names=("amplify", "-1")):
        render_prompt(prompter, amplify=-1)


def test_auto_amplification_scales_the_typical_values_not_one_outlier():
    prompter = _build("full")  # 3 x 32 x 32 values
    with torch.no_grad():
        prompter.prompt.fill_(float(torch.atanh(torch.tensor(0.01))))
        prompter.prompt[0, 0, 0, 0] = torch.atanh(torch.tensor(0.9))
    assert auto_amplification(prompter) == pytest.approx(100.0, rel=1e-3)  # not 1 / 0.9
    image = render_prompt(prompter, amplify="auto")
    assert image[5, 5].tolist() == [255, 255, 255]  # a typical value shows as full white
    with torch.no_grad():
        prompter.prompt.fill_(0.0)
    assert auto_amplification(prompter) == 1.0  # an untrained all-zero prompt: shown as it is


def test_describe_and_spec_round_trip():
    labels = {
        "padding 30 px, add": build_prompter("padding", size=30),
        "centre patch 10 px, mul": build_prompter("fixed_patch", size=10, mode="mul", is_center=True),
        "top-left patch 30 px, mul_residual": build_prompter("fixed_patch", size=30, mode="mul_residual"),
        "full 448 px, add": build_prompter("full", size=30),
        "replace_pad 10 px": build_prompter("replace_pad", size=10),
    }
    for label, prompter in labels.items():
        assert prompter.describe() == label and label in repr(prompter)
        rebuilt = build_prompter(**prompter.spec())
        assert rebuilt.describe() == label
        assert {k: v.shape for k, v in rebuilt.state_dict().items()} == \
               {k: v.shape for k, v in prompter.state_dict().items()}


def test_a_prompter_from_a_config_or_a_checkpoint_spec_is_the_one_build_prompter_makes():
    from vpkit.config import PromptConfig
    from vpkit.prompters import prompter_from_config

    config = PromptConfig(type="fixed_patch", size=30, mode="mul", is_center=True, image_size=448)
    expected = build_prompter("fixed_patch", size=15, mode="mul", is_center=True, image_size=224)
    assert prompter_from_config(config, size=15, image_size=224).spec() == expected.spec()
    assert prompter_from_config(expected.spec()).spec() == expected.spec()  # as a checkpoint records it
    assert prompter_from_config({"type": "full", "image_size": 224}).spec() == build_prompter("full", image_size=224).spec()
    seeded = [prompter_from_config(config, torch.Generator().manual_seed(3)) for _ in range(2)]
    torch.testing.assert_close(seeded[0].state_dict(), seeded[1].state_dict())
