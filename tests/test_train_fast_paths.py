"""The GPU fast paths, run on the CPU: fused SGD (the fp16 GradScaler step without a host sync) and torch.compile
modes (reduce-overhead's CUDA graphs: one step per call, outputs copied before the next replay)."""
import copy
import functools
import math

import pytest
import torch
from _linear_prompt import LinearPrompt, LinearScore
from _messages import raises_one_line
from test_train_overhead import SyncCounter, batches

import vpkit.evaluate
from vpkit.evaluate import PromptedScorer, predict
from vpkit.models import load_scorer
from vpkit.prompters import build_prompter
from vpkit.train import build_optimizer, load_optimizer_state, train_one_epoch, uses_fused_sgd

SYNC = "aten._local_scalar_dense.default"  # .item() / float(tensor): a host-device sync on a GPU


@pytest.fixture(scope="module")
def scorer():
    return load_scorer("tiny-random")


def image_batches(n, batch=2, size=224, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return [{"image": torch.randint(0, 256, (batch, 3, size, size), dtype=torch.uint8, generator=generator),
             "label": torch.rand(batch, generator=generator), "name": [f"{i}_{j}" for j in range(batch)]}
            for i in range(n)]


def linear_epoch(optimizer_for, n_steps=3, scaler=None, nan_at=None):
    """train_one_epoch on the closed-form linear prompt (microseconds a step); returns the prompt and scaler."""
    prompter = LinearPrompt()
    scaler = scaler or torch.amp.GradScaler("cpu")
    train_one_epoch(LinearScore(prompter), prompter, optimizer_for(prompter.parameters()), scaler,
                    batches(n_steps, nan_at=nan_at), "cpu", progress=False, max_grad_norm=1.0)
    return prompter.w.detach().clone(), scaler


# ----------------------------------------------------------------------------- fused SGD


def test_the_optimizer_is_fused_on_cuda():
    """Fused where it saves the fp16 sync (CUDA); plain on the CPU (uses_fused_sgd says why), unless asked."""
    assert uses_fused_sgd("cuda") and uses_fused_sgd(torch.device("cuda", 1)) and not uses_fused_sgd("cpu")
    optimizer = build_optimizer([torch.nn.Parameter(torch.zeros(3))], lr=60.0, fused=True)
    assert optimizer.param_groups[0]["fused"] is True
    assert optimizer._step_supports_amp_scaling  # GradScaler.step hands it the inf flag instead of reading it
    assert not build_optimizer([torch.nn.Parameter(torch.zeros(3))], lr=60.0).param_groups[0]["fused"]


def test_under_the_fp16_scaler_a_fused_step_does_not_wait_for_the_device():
    """Plain SGD makes GradScaler.step read the inf flag on the host each step (a sync on a GPU); fused SGD
    takes it as a tensor. The count of syncs is the behaviour: each one stalls a GPU's queue of steps. An epoch of 1 step and one of 3 read the loss and the norms once each (at the end), so
    the 2 more steps add only the optimizer's syncs."""
    per_step = {}
    for fused in (False, True):
        syncs = []
        for n_steps in (1, 3):
            with SyncCounter() as counter:
                linear_epoch(functools.partial(build_optimizer, lr=0.5, fused=fused), n_steps=n_steps)
            syncs.append(counter.counts[SYNC])
        per_step[fused] = (syncs[1] - syncs[0]) / 2
    assert per_step == {False: 1, True: 0}


def test_a_non_finite_step_leaves_the_fused_prompt_unchanged():
    """A NaN gradient at step 2 under an enabled scaler: the fused kernel skips that step as GradScaler.step
    skipped it for plain SGD, so both end on the same prompt, and the scaler backs off once."""
    prompts, scales = {}, {}
    for fused in (False, True):
        w, scaler = linear_epoch(functools.partial(build_optimizer, lr=0.5, fused=fused), n_steps=2, nan_at=2)
        prompts[fused], scales[fused] = w, scaler.get_scale()
        one_step, _ = linear_epoch(functools.partial(build_optimizer, lr=0.5, fused=fused), n_steps=1)
        assert torch.equal(w, one_step) and bool(torch.isfinite(w).all())  # step 2 changed nothing
    assert torch.equal(prompts[False], prompts[True])
    assert scales[True] == scales[False] == 65536.0 * 0.5  # GradScaler's initial scale, halved once


def test_fused_and_plain_sgd_train_the_same_prompt(scorer):
    """Three steps of the paper's SGD (lr 60, clipping at 1.0, scaled loss) on the tiny model from one start."""
    prompts = {}
    for fused in (False, True):
        torch.manual_seed(0)
        prompter = build_prompter("padding", 15, "add", image_size=scorer.image_size)
        model = PromptedScorer(scorer, prompter)
        optimizer = build_optimizer(prompter.parameters(), lr=60.0, fused=fused)
        train_one_epoch(model, prompter, optimizer, torch.amp.GradScaler("cpu"), image_batches(3), "cpu",
                        progress=False, max_grad_norm=1.0)
        prompts[fused] = torch.cat([p.detach().reshape(-1) for p in prompter.parameters()])
    assert not torch.equal(prompts[True], torch.zeros_like(prompts[True]))  # it trained
    assert torch.equal(prompts[True], prompts[False])  # measured: bitwise equal on the CPU (torch 2.13)


def test_an_older_runs_optimizer_state_resumes_into_the_fused_optimizer():
    """A trainer-state file written before SGD was fused has "fused": None in its param groups; torch's
    load_state_dict would copy that over and the fused GradScaler hand-over would then fail in plain SGD."""
    old = torch.optim.SGD([torch.nn.Parameter(torch.zeros(2))], lr=0.5, momentum=0.9)
    old.param_groups[0]["params"][0].grad = torch.ones(2)
    old.step()  # a momentum buffer to carry over
    saved = old.state_dict()
    assert saved["param_groups"][0]["fused"] is None

    def resumed(parameters):
        optimizer = build_optimizer(parameters, lr=0.5, momentum=0.9, fused=True)
        load_optimizer_state(optimizer, copy.deepcopy(saved))  # a fresh copy, as torch.load gives each resume
        return optimizer

    w, _ = linear_epoch(resumed, n_steps=2)
    expected, _ = linear_epoch(lambda parameters: _plain_resumed(parameters, saved), n_steps=2)
    torch.testing.assert_close(w, expected, rtol=0, atol=1e-7)  # the momentum buffer was restored

    fused = build_optimizer([torch.nn.Parameter(torch.zeros(2))], lr=0.5, momentum=0.9, fused=True)
    load_optimizer_state(fused, copy.deepcopy(saved))
    assert fused.param_groups[0]["fused"] is True and fused.state_dict()["state"][0]["momentum_buffer"].equal(
        saved["state"][0]["momentum_buffer"])


def _plain_resumed(parameters, saved):
    optimizer = torch.optim.SGD(parameters, lr=0.5, momentum=0.9)
    optimizer.load_state_dict(copy.deepcopy(saved))
    return optimizer


# ----------------------------------------------------------------------------- compile modes


class ReplayingCompile:
    """Stands in for torch.compile(mode="reduce-overhead") on the CPU, where inductor has no CUDA graphs, as a CUDA
    graph tree behaves: the function runs eagerly and its output is written into the memory of a recorded graph,
    which later replays reuse (overwriting the last output). A call that comes before
    torch.compiler.cudagraph_mark_step_begin() said the previous step is done cannot reuse it (that step's outputs
    or backward may still be in use): it records another graph with memory of its own, as torch does."""

    def __init__(self, monkeypatch):
        self.modes, self.graphs, self.step_done = [], [], True  # graphs: those recorded, per compiled function
        monkeypatch.setattr(torch.compiler, "cudagraph_mark_step_begin", self.mark_step_begin)

    def mark_step_begin(self):
        self.step_done = True

    def __call__(self, function, **options):
        self.modes.append(options.get("mode"))
        graphs = []
        self.graphs.append(graphs)

        def replay(images):
            scores = function(images)
            if not self.step_done or not graphs or graphs[-1].shape != scores.shape:
                graphs.append(torch.empty_like(scores))  # another graph, and its memory
            self.step_done = False
            return graphs[-1].copy_(scores.detach())

        return replay


def test_a_compile_mode_reaches_torch_compile_and_repeated_calls_reuse_one_graph(scorer, monkeypatch):
    """Each call tells a CUDA graph tree that the previous step is done, so a training loop replays one graph in
    the same memory instead of recording a graph per step."""
    compile_ = ReplayingCompile(monkeypatch)
    monkeypatch.setattr(vpkit.evaluate.torch, "compile", compile_)
    prompter = build_prompter("padding", 15, "add", image_size=scorer.image_size)
    for compile_model in (True, "reduce-overhead"):
        model = PromptedScorer(scorer, prompter, compile_model=compile_model)
        for _ in range(3):
            model(torch.rand(2, 3, 224, 224))
    assert compile_.modes == [None, "reduce-overhead"]
    assert [len(graphs) for graphs in compile_.graphs] == [1, 1]  # three calls each, one graph each


def test_predict_keeps_each_batchs_scores_when_a_replay_reuses_the_output(scorer, monkeypatch):
    loader = image_batches(3)
    prompter = build_prompter("padding", 15, "add", image_size=scorer.image_size)
    eager = predict(PromptedScorer(scorer, prompter), loader, "cpu", progress=False)
    monkeypatch.setattr(vpkit.evaluate.torch, "compile", ReplayingCompile(monkeypatch))
    replayed = predict(PromptedScorer(scorer, prompter, compile_model="reduce-overhead"), loader, "cpu",
                       progress=False)
    assert eager["score"].nunique() == 6  # distinct scores, so overwritten ones would show
    assert replayed["score"].tolist() == eager["score"].tolist()


class LinearScorer(torch.nn.Module):
    """A scorer of 8 px images that is one matmul, so that inductor compiles it in seconds on the CPU (the tiny
    model takes over a minute on two cores)."""

    image_size = 8

    def __init__(self):
        super().__init__()
        self.register_buffer("weight", torch.linspace(-1, 1, 3 * 8 * 8))

    def prepare_batch(self, batch_size):
        pass

    def forward(self, images, prompter):
        return prompter(images).flatten(1) @ self.weight


def test_reduce_overhead_trains_and_scores_through_inductor_on_the_cpu(tmp_path):
    """The real torch.compile(mode="reduce-overhead") path: inductor is asked for CUDA graphs (and skips them:
    the CPU has none), the loop trains two steps and predict's scores are those of the eager model."""
    from torch._dynamo.utils import counters

    torch.manual_seed(0)
    prompter = build_prompter("padding", 2, "add", image_size=8)
    loader = image_batches(2, size=8)
    model = PromptedScorer(LinearScorer(), prompter, compile_model="reduce-overhead",
                           compile_cache_dir=str(tmp_path / "cc"))
    counters.clear()
    try:
        _, n_images, stats = train_one_epoch(model, prompter, build_optimizer(prompter.parameters(), lr=0.1),
                                             torch.amp.GradScaler("cpu"), loader, "cpu", progress=False,
                                             max_grad_norm=1.0)
        compiled = predict(model, loader, "cpu", progress=False)
        assert counters["inductor"]["cudagraph_skips"] > 0  # the mode reached inductor
    finally:
        torch._dynamo.reset()
    assert n_images == 4 and math.isfinite(stats["grad_norm_mean"])
    eager = predict(PromptedScorer(LinearScorer(), prompter), loader, "cpu", progress=False)
    assert eager["score"].nunique() == 4
    assert compiled["score"].tolist() == pytest.approx(eager["score"].tolist(), rel=1e-5)


# ----------------------------------------------------------------------------- train.compile and --compile


@pytest.mark.parametrize("written, value", [("false", False), ("true", True), ("default", True),
                                            ("reduce-overhead", "reduce-overhead"),
                                            ("max-autotune-no-cudagraphs", "max-autotune-no-cudagraphs")])
def test_train_compile_is_on_off_or_a_torch_compile_mode(tmp_path, written, value):
    """true is torch.compile's default mode; how a run executes is not in the config hash, so a run resumes
    under any mode."""
    from vpkit.config import load_config, paper_config

    text = paper_config(4).to_yaml()
    assert "  compile: false\n" in text
    path = tmp_path / "c.yaml"
    path.write_text(text.replace("  compile: false\n", f"  compile: {written}\n"))
    config = load_config(path)
    assert config.train.compile == value and type(config.train.compile) is type(value)
    assert config.hash() == paper_config(4).hash() == "5b8733c4a538adb8"  # the hash before modes existed
    path.write_text(config.to_yaml())
    assert load_config(path).train.compile == value  # written and read back the same


def test_a_bad_compile_mode_is_one_clear_error(tmp_path):
    from vpkit.config import ConfigError, load_config, paper_config

    path = tmp_path / "c.yaml"
    path.write_text(paper_config(4).to_yaml().replace("  compile: false\n", "  compile: fast\n"))
    with raises_one_line(ConfigError, names=(path, "train.compile", "'fast'", "reduce-overhead")):
        load_config(path)


@pytest.mark.parametrize("flags, value", [([], None), (["--compile"], True), (["--compile", "off"], False),
                                          (["--compile", "reduce-overhead"], "reduce-overhead")])
def test_the_compile_flag_takes_a_mode_and_alone_means_the_default_mode(flags, value):
    from vpkit.cli import build_parser, train_overrides
    from vpkit.config import COMPILE_MODES, paper_config

    parser = build_parser()
    args = parser.parse_args(["train", "4", *flags])
    config = paper_config(4).with_overrides(train_overrides(args), source="command line")
    assert config.train.compile == (False if value is None else value)
    train_parser = next(action for action in parser._subparsers._group_actions).choices["train"]
    choices = next(action.choices for action in train_parser._actions if action.dest == "compile")
    assert tuple(choices) == ("off", *COMPILE_MODES)  # the flag offers what the config accepts


def test_a_compile_mode_is_turned_off_on_the_cpu_with_a_note():
    from vpkit.config import paper_config, resolve_for_model

    config = paper_config(4).with_overrides({"train": {"compile": "reduce-overhead"}})
    resolved, notes = resolve_for_model(config, 448, "cpu")
    assert resolved.train.compile is False and any("compile -> off" in note for note in notes)
    on_gpu, _ = resolve_for_model(config, 448, "cuda")
    assert on_gpu.train.compile == "reduce-overhead"


def test_gradients_accumulate_in_one_buffer_allocated_outside_the_model():
    """Under reduce-overhead the backward is a CUDA graph whose output memory the next step overwrites; the loop
    keeps one gradient buffer per prompt parameter, zeroed in place, so backward only ever adds into it (also over
    grad_accum micro-batches) and the optimizer reads that buffer."""
    prompter = LinearPrompt()
    optimizer = build_optimizer(prompter.parameters(), lr=0.5)
    seen = []
    step = optimizer.step

    def recording_step(*args, **kwargs):
        seen.append(prompter.w.grad)
        return step(*args, **kwargs)

    optimizer.step = recording_step
    train_one_epoch(LinearScore(prompter), prompter, optimizer, torch.amp.GradScaler("cpu"), batches(4), "cpu",
                    grad_accum=2, progress=False, max_grad_norm=None)
    assert len(seen) == 2 and seen[0] is seen[1] is prompter.w.grad
    assert prompter.w.grad.abs().sum() == 0  # zeroed after the last step, still allocated
