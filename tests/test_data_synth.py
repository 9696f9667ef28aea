"""The synthetic KADID-style demo set: distortions, references, scores, the generated folder."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from _messages import assert_one_line_error, raises_one_line

from vpkit.data import content_overlap, load_table
from vpkit.data.cli import main
from vpkit.data.synth import (
    COLOUR_DEMO_DISTORTIONS,
    COLOUR_PRETRAIN_DISTORTIONS,
    DEMO_DISTORTIONS,
    DISTORTIONS,
    FAMILIES,
    PRETRAIN_DISTORTIONS,
    SEVERITY_CURVES,
    TYPE_BY_NAME,
    generate,
    reference_images,
    ssim,
    synthetic_dmos,
)


@pytest.fixture(scope="module")
def reference():
    return reference_images(1, (64, 48), seed=4, photos=False)[0].image


def test_families_follow_kadid():
    assert set(FAMILIES) == {"blur", "color", "compression", "noise", "brightness_change", "spatial",
                             "sharpness_contrast"}
    assert sorted(n for names in FAMILIES.values() for n in names) == sorted(DISTORTIONS)
    assert len(DISTORTIONS) >= 12
    assert sorted(TYPE_BY_NAME[n].type_id for n in DISTORTIONS) == list(range(1, len(DISTORTIONS) + 1))
    assert TYPE_BY_NAME["gaussian_blur"].type_id == 1 and TYPE_BY_NAME["jpeg"].type_id == 10
    assert set(SEVERITY_CURVES) == set(DISTORTIONS)


def test_demo_and_pretrain_distortions_do_not_overlap():
    structural = {"blur", "noise", "compression", "spatial"}
    assert set(PRETRAIN_DISTORTIONS) <= {name for family in structural for name in FAMILIES[family]}
    assert not set(DEMO_DISTORTIONS) & set(PRETRAIN_DISTORTIONS)
    assert not set(COLOUR_DEMO_DISTORTIONS) & set(COLOUR_PRETRAIN_DISTORTIONS)
    assert len(DEMO_DISTORTIONS) >= 5 and set(DEMO_DISTORTIONS) <= set(DISTORTIONS)


@pytest.mark.parametrize("name", sorted(DISTORTIONS))
def test_each_distortion_is_deterministic_and_grows_with_level(name, reference):
    distort = DISTORTIONS[name]
    errors = []
    for level in (1, 5):
        out = distort(reference, level, np.random.default_rng(0))
        assert out.dtype == np.uint8 and out.shape == reference.shape
        np.testing.assert_array_equal(out, distort(reference, level, np.random.default_rng(0)))
        errors.append(float(np.mean((out.astype(float) - reference) ** 2)))
    assert 0 < errors[0] < errors[1], errors
    with raises_one_line(ValueError, names=("6", "1..5")):
        distort(reference, 6, np.random.default_rng(0))


def test_reference_images_are_deterministic_and_seeded(reference):
    first = reference_images(6, (64, 48), seed=1, photos=False)
    again = reference_images(6, (64, 48), seed=1, photos=False)
    other = reference_images(6, (64, 48), seed=2, photos=False)
    assert [r.image.shape for r in first] == [(48, 64, 3)] * 6
    assert all(np.array_equal(a.image, b.image) for a, b in zip(first, again))
    assert not any(np.array_equal(a.image, b.image) for a in first for b in other)
    assert all(r.source.startswith("procedural:") for r in first)
    assert all(r.image.std() > 5 for r in first)  # not flat


def test_photos_come_from_scikit_image():
    pytest.importorskip("skimage")
    refs = reference_images(8, (64, 48), seed=0, photos=True)
    photos = [r for r in refs if r.source.startswith("photo:skimage.data.")]
    assert len(photos) == 4


def test_scores_are_the_documented_function(reference):
    assert ssim(reference, reference) == pytest.approx(1.0)
    curve = SEVERITY_CURVES["jpeg"]
    assert synthetic_dmos("jpeg", 2, reference, reference) == round(0.75 * curve[1] + 0.25 * 5.0, 2)
    mild = DISTORTIONS["jpeg"](reference, 1, np.random.default_rng(0))
    strong = DISTORTIONS["jpeg"](reference, 5, np.random.default_rng(0))
    assert synthetic_dmos("jpeg", 1, reference, mild) > synthetic_dmos("jpeg", 5, reference, strong)


SMALL = {"n_refs": 5, "distortions": ["jpeg", "pixelate", "darken"], "levels": (1, 3, 5), "size": (40, 32),
         "include_photos": False, "progress": False, "workers": 1}


def test_generate_writes_the_papers_kadid_layout(tmp_path):
    folder = generate(tmp_path, seed=3, **SMALL)
    assert folder == tmp_path / "kadid10k"
    frame = pd.read_csv(folder / "split_kadid10k.csv")
    assert list(frame.columns) == ["dist_img", "ref_img", "dmos", "var", "split"]
    assert len(frame) == 5 * 3 * 3
    assert frame["dist_img"].str.fullmatch(r"I0[1-5]_(10|17|21)_0[135]\.png").all()
    assert frame["dmos"].between(1, 5).all()
    images = {p.name for p in (folder / "images").iterdir()}
    assert images == set(frame["dist_img"]) | {f"I0{i}.png" for i in range(1, 6)}
    assert frame.groupby("ref_img")["split"].nunique().max() == 1  # a reference's images stay together
    assert frame.drop_duplicates("ref_img")["split"].value_counts().to_dict() == {"train": 3, "val": 1, "test": 1}
    readme = (folder / "README.md").read_text()
    assert "NOT HUMAN OPINIONS" in readme
    settings = json.loads((folder / "synthetic.json").read_text())
    assert settings["distortions"] == ["jpeg", "darken", "pixelate"] and settings["reference_seed"] == 3


def test_generation_is_reproducible_and_reference_seed_changes_only_references(tmp_path):
    first = generate(tmp_path / "a", seed=3, **SMALL)
    second = generate(tmp_path / "b", seed=3, **{**SMALL, "workers": 2})
    assert (first / "split_kadid10k.csv").read_bytes() == (second / "split_kadid10k.csv").read_bytes()
    assert (first / "images" / "I02_21_05.png").read_bytes() == (second / "images" / "I02_21_05.png").read_bytes()
    other = generate(tmp_path / "c", seed=3, reference_seed=77, **SMALL)
    assert (first / "images" / "I01.png").read_bytes() != (other / "images" / "I01.png").read_bytes()
    split = pd.read_csv(first / "split_kadid10k.csv")["split"]
    assert split.equals(pd.read_csv(other / "split_kadid10k.csv")["split"])


def test_the_synthetic_set_loads_through_the_kadid_loader(tmp_path, recwarn):
    generate(tmp_path, **SMALL)
    table = load_table("kadid", tmp_path)
    assert table.synthetic and table.layout == "paper" and len(table) == 45
    assert not [w for w in recwarn if "images but this file lists" in str(w.message)]
    assert (content_overlap(table.frame)["shared_groups"] == 0).all()
    content = load_table("kadid", tmp_path, split="content")
    assert set(content.frame["split"]) == {"train", "val", "test"}


def test_generate_replaces_its_own_set_but_never_a_real_dataset(tmp_path):
    generate(tmp_path, **SMALL)
    generate(tmp_path, **{**SMALL, "n_refs": 3})
    assert len(pd.read_csv(tmp_path / "kadid10k" / "split_kadid10k.csv")) == 27
    assert not (tmp_path / "kadid10k" / "images" / "I05.png").exists()
    real = tmp_path / "real"
    (real / "kadid10k").mkdir(parents=True)
    (real / "kadid10k" / "dmos.csv").write_text("dist_img,ref_img,dmos,var\n")
    with raises_one_line(FileExistsError, names=(real,)):
        generate(real, **SMALL)
    assert (real / "kadid10k" / "dmos.csv").read_text() == "dist_img,ref_img,dmos,var\n"


def test_generate_rejects_bad_arguments(tmp_path):
    with raises_one_line(ValueError, names=("'fog'", "jpeg")):
        generate(tmp_path, **{**SMALL, "distortions": ["jpeg", "fog"]})
    with raises_one_line(ValueError, names=("0", "1..5")):
        generate(tmp_path, **{**SMALL, "levels": (0, 1)})
    with raises_one_line(TypeError, names=("'jpeg'",)):
        generate(tmp_path, **{**SMALL, "distortions": "jpeg"})


def test_cli_synth(tmp_path, capsys):
    status = main(["data", "synth", str(tmp_path), "--n-refs", "3", "--distortions", "jpeg,contrast_change",
                   "--levels", "2,4", "--size", "40x32", "--no-photos", "--workers", "1", "--quiet"])
    assert status == 0 and "not human opinions" in capsys.readouterr().out
    frame = pd.read_csv(tmp_path / "kadid10k" / "split_kadid10k.csv")
    assert len(frame) == 12 and set(frame["dist_img"].str[4:6]) == {"10", "25"}
    assert main(["data", "synth", str(tmp_path), "--size", "big", "--quiet"]) == 2


# The parent waits in its progress bar while the workers, their tasks done, sit idle: a Ctrl-C then reaches the
# workers too (a terminal signals the whole process group), as it does at any moment of a real run.
STOPPED_SYNTH = r"""
import sys, time
from pathlib import Path
import vpkit.data.synth
from vpkit.cli import main

class WaitingBar:
    def __init__(self, *args, **kwargs):
        pass
    def __enter__(self):
        return self
    def __exit__(self, *exc):
        return False
    def update(self, n):
        Path(sys.argv[2]).write_text("waiting")
        time.sleep(60)

sys.modules["vpkit.data.synth.generate"].tqdm = WaitingBar
sys.exit(main(["data", "synth", sys.argv[1], "--n-refs", "4", "--distortions", "jpeg", "--levels", "1",
               "--size", "40x32", "--no-photos", "--workers", "2", "--quiet"]))
"""


def test_ctrl_c_stops_synth_with_one_line_and_no_worker_traceback(tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time

    marker = tmp_path / "waiting"
    child = subprocess.Popen([sys.executable, "-c", STOPPED_SYNTH, str(tmp_path / "out"), str(marker)],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
                             env={**os.environ, "PYTHONPATH": os.getcwd()})
    try:
        deadline = time.monotonic() + 60
        while not marker.exists() and child.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.5)  # the workers finish the other (tiny) references and wait for more
        os.killpg(child.pid, signal.SIGINT)  # what Ctrl-C in a terminal does
        _, err = child.communicate(timeout=60)
    finally:
        if child.poll() is None:
            os.killpg(child.pid, signal.SIGKILL)
    assert child.returncode == 130, err
    assert_one_line_error(err, names=("vpkit data: stopped", "nothing was written"), fix="run the command again")
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())  # no set, no staging folder
