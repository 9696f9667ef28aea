"""Fetching through huggingface_hub's real download code against a local stand-in Hub (tests/hub_standin.py):
models by Hub id, `vpkit data download`, `vpkit import-prompt --released`, and every failure as one line.
Nothing here contacts the real Hub: HF_ENDPOINT points at the stand-in (checked in the fixture)."""
from __future__ import annotations

import hashlib
import io
import json
import shutil
import tarfile
import zipfile
from collections import namedtuple
from functools import cache
from pathlib import Path

import pandas as pd
import pytest
import torch
from _messages import assert_one_line_error, raises_one_line
from hub_standin import StandInHub, start
from PIL import Image

from vpkit import hub as vhub
from vpkit import paper
from vpkit.cli import main
from vpkit.data.download import DOWNLOAD_RECORD
from vpkit.models.tiny import TINY_ASSET_DIR

MODEL_REPO = "vpkit-test/tiny-owl"
DATA_REPO = "chaofengc/IQA-PyTorch-Datasets"


# ----------------------------------------------------------------------------- what the stand-in serves


def png(value: int, size=(40, 32)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, (value, 255 - value, (3 * value) % 256)).save(buffer, "PNG")
    return buffer.getvalue()


def tgz(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as bundle:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            bundle.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def zipped(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as bundle:
        for name, data in members.items():
            bundle.writestr(name, data)
    return buffer.getvalue()


def csv(rows: list[dict]) -> bytes:
    return pd.DataFrame(rows).to_csv(index=False).encode()


SPLITS = ["train"] * 6 + ["val"] * 3 + ["test"] * 3  # a run needs 3 images in val and test


@cache
def kadid_files() -> tuple[dict[str, bytes], bytes]:
    """pyiqa-style kadid10k.tgz members (kadid10k/images/, kadid10k/dmos.csv) and the split file for them."""
    names = [f"I{ref:02d}_01_0{level}.png" for ref in range(1, 7) for level in (1, 2)]
    rows = [{"dist_img": n, "ref_img": n[:3] + ".png", "dmos": 1 + i * 0.3, "var": 0.1} for i, n in enumerate(names)]
    members = {f"kadid10k/images/{n}": png(20 * i) for i, n in enumerate(names)} | {"kadid10k/dmos.csv": csv(rows)}
    split = csv([{**row, "split": s} for row, s in zip(rows, SPLITS)])
    return members, split


def koniq_members(with_sets: bool = True) -> dict[str, bytes]:
    names = [f"{1000 + i}.jpg" for i in range(len(SPLITS))]
    members = {f"koniq10k/512x384/{n}": png(20 * i) for i, n in enumerate(names)}
    if with_sets:
        sets = {"train": "training", "val": "validation", "test": "test"}
        members["koniq10k/koniq10k_distributions_sets.csv"] = csv(
            [{"image_name": n, "MOS": 30 + 5 * i, "SD": 0.5, "set": sets[s]} for i, (n, s) in enumerate(zip(names, SPLITS))])
    return members


@cache
def agiqa_files() -> tuple[dict[str, bytes], bytes]:
    names = [f"model_{i:03d}.jpg" for i in range(len(SPLITS))]
    members = {f"AGIQA-3K/{n}": png(10 + 20 * i) for i, n in enumerate(names)}
    split = csv([{"name": n, "prompt": f"prompt {i // 2}", "mos_quality": 1 + 0.3 * i, "split": s}
                 for i, (n, s) in enumerate(zip(names, SPLITS))])
    return members, split


@cache
def released_zip(size: int = 30, image_size: int = 448) -> bytes:
    """The paper's released archive shape: <output dir>/SGD_mplug2_exp_NN_.../checkpoint-<step>/ per epoch with
    visual_prompt.pth and trainer_state.json, the best named by best_model_checkpoint in the last one."""
    from vpkit.prompters import build_prompter

    members = {}
    for number, name in ((4, "SGD_mplug2_exp_04_kadid_padding_30px_add"), (5, "SGD_mplug2_exp_05_koniq_padding_30px_add")):
        for epoch in (1, 2):
            prompter = build_prompter("padding", size=size, image_size=image_size)
            with torch.no_grad():
                for parameter in prompter.parameters():
                    parameter.fill_(number + epoch / 10)
            buffer = io.BytesIO()
            torch.save(prompter.state_dict(), buffer)
            folder = f"final_mplug_owl2_exps/{name}/checkpoint-{epoch * 10}"
            members[f"{folder}/visual_prompt.pth"] = buffer.getvalue()
            members[f"{folder}/trainer_state.json"] = json.dumps({
                "epoch": float(epoch), "best_model_checkpoint": f"outputs/{name}/checkpoint-10",
                "log_history": [{"epoch": float(e), "eval_srocc": 0.5, "eval_plcc": 0.5, "eval_metric": 0.5}
                                for e in range(1, epoch + 1)]}).encode()
    return zipped(members)


Served = namedtuple("Served", "hub root model_files")


@pytest.fixture
def served(tmp_path, monkeypatch):
    """The stand-in Hub with a tiny model, the three dataset archives, the released prompts and the split files;
    HF_HOME in tmp_path (an empty cache), HF_ENDPOINT at the stand-in, the split files' pins set to its files."""
    hub = StandInHub()
    model_files = {p.name: p.read_bytes() for p in TINY_ASSET_DIR.iterdir() if p.name != "README.md"}
    model_files["pytorch_model.bin"] = b"a second copy of the weights that must never be fetched"
    hub.add_repo(MODEL_REPO, model_files)
    kadid, kadid_split = kadid_files()
    agiqa, agiqa_split = agiqa_files()
    hub.add_repo(DATA_REPO, {"kadid10k.tgz": tgz(kadid), "koniq10k.tgz": tgz(koniq_members()),
                             "AGIQA-3K.zip": zipped(agiqa)}, repo_type="dataset")
    hub.add_repo(paper.RELEASED_REPO, {paper.RELEASED_ARCHIVE: released_zip()})
    hub.files["paper/data/split_kadid10k.csv"] = kadid_split
    hub.files["paper/data/split_agiqa3k.csv"] = agiqa_split
    hub, server = start(hub)
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)  # conftest's guard, lifted for the stand-in
    for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_HUB_CACHE", "HF_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HF_ENDPOINT", hub.url)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    monkeypatch.setenv(paper.PAPER_FILES_URL_VARIABLE, f"{hub.url}/files/paper")
    monkeypatch.setattr(paper, "SPLIT_FILES", {
        "kadid": paper.PinnedFile("data/split_kadid10k.csv", len(kadid_split), hashlib.sha256(kadid_split).hexdigest()),
        "agiqa": paper.PinnedFile("data/split_agiqa3k.csv", len(agiqa_split), hashlib.sha256(agiqa_split).hexdigest()),
    })
    assert vhub.endpoint().startswith("http://127.0.0.1:") and "huggingface.co" not in paper.paper_files_url()
    yield Served(hub, tmp_path, model_files)
    server.shutdown()
    server.server_close()


def one_line_error(capsys, args, names=(), fix=None) -> str:
    """The command fails with status 2 and one line on stderr (huggingface_hub's progress bars aside) that names
    `names` and offers a fix (tests/_messages.py)."""
    assert main(args) == 2
    lines = [line for line in capsys.readouterr().err.strip().splitlines() if line.startswith("vpkit")]
    assert len(lines) == 1, lines
    return assert_one_line_error(lines[0], names, fix)


# ----------------------------------------------------------------------------- models


def test_a_model_by_hub_id_is_fetched_once_with_one_weight_copy_then_loads_offline(served, monkeypatch):
    from vpkit.models import load_scorer

    scorer = load_scorer(MODEL_REPO)
    commit = served.hub.repos[("models", MODEL_REPO)].commit
    source = scorer.model_source
    assert (source["kind"], source["repo_id"], source["commit"]) == ("hub", MODEL_REPO, commit)
    fetched = [path.rsplit("/", 1)[-1] for method, path, _ in served.hub.requests if method == "GET" and "/resolve/" in path]
    assert "model.safetensors" in fetched and "pytorch_model.bin" not in fetched
    image = torch.rand(1, 3, scorer.image_size, scorer.image_size)
    reference = load_scorer("tiny")
    assert torch.allclose(scorer.word_logits(image), reference.word_logits(image))

    served.hub.requests.clear()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    again = load_scorer(MODEL_REPO)
    assert again.model_source["commit"] == commit and served.hub.requests == []


def test_a_revision_pins_the_model_and_a_local_folder_of_the_same_name_wins(served, tmp_path, monkeypatch):
    from vpkit.models import load_scorer

    commit = served.hub.repos[("models", MODEL_REPO)].commit
    assert load_scorer(f"{MODEL_REPO}@{commit}").model_source["commit"] == commit
    with raises_one_line(vhub.FetchError, names=(MODEL_REPO, "v9")):
        load_scorer(f"{MODEL_REPO}@v9")

    monkeypatch.chdir(tmp_path)
    shutil.copytree(TINY_ASSET_DIR, tmp_path / MODEL_REPO)
    served.hub.requests.clear()
    source = load_scorer(MODEL_REPO).model_source
    assert (source["kind"], source["path"]) == ("folder", str((tmp_path / MODEL_REPO).resolve()))
    assert served.hub.requests == []
    assert vhub.with_revision("org/name", "v1") == "org/name@v1"
    with raises_one_line(vhub.FetchError, names=("'tiny'", "v1")):
        vhub.with_revision("tiny", "v1")


@pytest.mark.parametrize("case, said", [  # besides the repository: what tells this failure from the others
    ("missing repository", "not found"),
    ("missing file", paper.RELEASED_ARCHIVE),
    ("gated", "401"),
    ("offline, not cached", "HF_HUB_OFFLINE"),
    ("unreachable", "http://127.0.0.1:9"),
])
def test_hub_failures_are_one_line_naming_the_repository_and_the_fix(served, monkeypatch, capsys, case, said):
    archive_args = ["import-prompt", "--released", "--out", str(served.root / "released")]
    if case == "missing repository":
        archive_args[2:2] = ["someone/not-there"]
    elif case == "missing file":
        served.hub.repos[("models", paper.RELEASED_REPO)].files.clear()
    elif case == "gated":
        served.hub.repos[("models", paper.RELEASED_REPO)].gated = True
    elif case == "offline, not cached":
        monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    else:
        monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # nothing listens on the discard port
    repository = "someone/not-there" if case == "missing repository" else paper.RELEASED_REPO
    one_line_error(capsys, archive_args, names=(repository, said))
    assert not (served.root / "released").exists() or not any((served.root / "released").iterdir())


# ----------------------------------------------------------------------------- datasets


def test_data_download_unpacks_the_paper_layout_that_data_check_accepts(served, capsys):
    from vpkit.data.check import check_datasets
    from vpkit.data.table import load_table

    root = served.root / "data"
    assert main(["data", "download", "kadid10k", "koniq10k", "agiqa3k", "--to", str(root)]) == 0
    assert check_datasets(root, progress=False, out=lambda line: None) == 0
    for dataset, folder in (("kadid", "kadid10k"), ("koniq", "koniq10k"), ("agiqa", "AGIQA-3K")):
        table = load_table(dataset, root, count_check="off")
        assert table.layout == "paper" and table.frame["split"].value_counts().to_dict() == {
            "train": 6, "val": 3, "test": 3}
        assert (root / folder).is_dir()
    record = json.loads((root / DOWNLOAD_RECORD).read_text())
    served_archives = served.hub.repos[("datasets", DATA_REPO)].files
    for key, archive in (("kadid", "kadid10k.tgz"), ("koniq", "koniq10k.tgz"), ("agiqa", "AGIQA-3K.zip")):
        assert record[key]["sha256"] == hashlib.sha256(served_archives[archive]).hexdigest()
        assert record[key]["repo_id"] == DATA_REPO and len(record[key]["commit"]) == 40
    assert record["kadid"]["split_file"]["sha256"] == paper.SPLIT_FILES["kadid"].sha256
    assert not list(root.glob(".vpkit-unpack-*"))

    served.hub.requests.clear()
    assert main(["data", "download", "kadid10k", "--to", str(root)]) == 0
    assert "already unpacked from kadid10k.tgz" in capsys.readouterr().out
    assert served.hub.gets("kadid10k.tgz") == []


def test_an_archive_other_than_the_recorded_one_is_refused_unless_forced(served, capsys):
    root = served.root / "data"
    assert main(["data", "download", "kadid", "--to", str(root)]) == 0
    shutil.rmtree(root / "kadid10k")
    members = dict(kadid_files()[0])
    members["kadid10k/images/extra.png"] = png(7)
    repo = served.hub.repos[("datasets", DATA_REPO)]
    repo.files["kadid10k.tgz"], repo.commit = tgz(members), "1" * 40  # a new commit of the Hub dataset
    one_line_error(capsys, ["data", "download", "kadid", "--to", str(root)], names=(DOWNLOAD_RECORD, "kadid10k.tgz"),
                   fix="--force")
    assert not (root / "kadid10k").exists()
    assert main(["data", "download", "kadid", "--to", str(root), "--force"]) == 0
    assert (root / "kadid10k" / "images" / "extra.png").is_file()


def test_a_dropped_connection_is_resumed_from_where_it_stopped(served, monkeypatch):
    import huggingface_hub.constants

    from vpkit.data.download import download

    # huggingface_hub writes what it received in chunks of DOWNLOAD_CHUNK_SIZE (10 MB); small ones here, so that
    # the bytes before the drop reach the disk as they do with a real archive
    monkeypatch.setattr(huggingface_hub.constants, "DOWNLOAD_CHUNK_SIZE", 64)
    half = len(served.hub.repos[("datasets", DATA_REPO)].files["kadid10k.tgz"]) // 2
    served.hub.cut_once(f"/datasets/{DATA_REPO}/resolve/main/kadid10k.tgz", after=half)
    download(["kadid"], served.root / "data", out=lambda line: None)
    assert served.hub.gets("kadid10k.tgz") == [None, f"bytes={half // 64 * 64}-"]
    assert (served.root / "data" / "kadid10k" / "split_kadid10k.csv").is_file()

    split_file = served.root / "split" / "split_agiqa3k.csv"
    split_file.parent.mkdir()
    whole = served.hub.files["paper/data/split_agiqa3k.csv"]
    split_file.with_name("split_agiqa3k.csv.part").write_bytes(whole[:200])  # an earlier run stopped here
    fetched = paper.fetch_split_file("agiqa", split_file.parent)
    assert served.hub.gets("split_agiqa3k.csv") == ["bytes=200-"] and fetched.path.read_bytes() == whole
    assert not split_file.with_name("split_agiqa3k.csv.part").exists()


@pytest.mark.parametrize("case, said", [  # what tells this failure from the others
    ("corrupt archive", "kadid10k.tgz"),
    ("missing member", "koniq10k/koniq10k_distributions_sets.csv"),
    ("wrong sha256", "sha256"),
    ("too little disk", "GB free"),
])
def test_data_download_failures_are_one_line_and_leave_no_half_folder(served, monkeypatch, capsys, case, said):
    root = served.root / "data"
    files = served.hub.repos[("datasets", DATA_REPO)].files
    name = "kadid10k"
    if case == "corrupt archive":
        files["kadid10k.tgz"] = files["kadid10k.tgz"][:300]
    elif case == "missing member":
        files["koniq10k.tgz"], name = tgz(koniq_members(with_sets=False)), "koniq10k"
    elif case == "wrong sha256":
        monkeypatch.setitem(paper.SPLIT_FILES, "kadid", paper.PinnedFile("data/split_kadid10k.csv",
                                                                         paper.SPLIT_FILES["kadid"].size, "0" * 64))
    else:
        usage = shutil.disk_usage(served.root)
        monkeypatch.setattr(shutil, "disk_usage", lambda path: usage._replace(free=1000))
    one_line_error(capsys, ["data", "download", name, "--to", str(root)], names=(said,))
    assert not (root / name).exists() and not list(root.glob(".vpkit-unpack-*"))
    assert not (root / DOWNLOAD_RECORD).exists()
    if case == "too little disk":
        assert served.hub.gets("kadid10k.tgz") == []  # refused before the download started


# ----------------------------------------------------------------------------- released prompts


def test_import_released_fetches_the_archive_and_imports_every_experiment_folder(served, capsys):
    from vpkit.evaluate import load_trained_prompt
    from vpkit.runs import load_prompt_checkpoint

    out = served.root / "released"
    assert main(["import-prompt", "--released", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "experiment  4 -> " in printed and "experiment  5 -> " in printed
    missing = ", ".join(str(n) for n in range(1, 34) if n not in (4, 5))
    assert f"the archive lacks 31 of the paper's experiments: {missing}" in printed
    run = out / "exp_04_kadid_padding_30px_add"
    trained = load_trained_prompt(run)
    assert trained.config.number == 4 and trained.config.model.name_or_path == paper.PAPER_MODEL
    state, metadata = load_prompt_checkpoint(run / "best.safetensors")
    assert {round(float(v.flatten()[0]), 4) for v in state.values()} == {4.1}  # checkpoint-10, the best
    commit = served.hub.repos[("models", paper.RELEASED_REPO)].commit
    assert metadata["imported_from"] == (
        f"hf://{paper.RELEASED_REPO}@{commit}/{paper.RELEASED_ARCHIVE}!/final_mplug_owl2_exps/"
        "SGD_mplug2_exp_04_kadid_padding_30px_add/checkpoint-10/visual_prompt.pth")
    assert (out / "exp_05_koniq_padding_30px_add" / "best.safetensors").is_file()
    assert not list(out.glob(".released-*"))

    assert main(["import-prompt", "--released", "--out", str(out)]) == 0
    assert "imported 0, kept 2" in capsys.readouterr().out


def test_import_released_refuses_a_damaged_archive_in_one_line(served, capsys):
    files = served.hub.repos[("models", paper.RELEASED_REPO)].files
    whole = files[paper.RELEASED_ARCHIVE]
    files[paper.RELEASED_ARCHIVE] = whole[:1000] + bytes(b ^ 0xFF for b in whole[1000:1100]) + whole[1100:]
    one_line_error(capsys, ["import-prompt", "--released", "--out", str(served.root / "released")],
                   names=(paper.RELEASED_ARCHIVE,))


def test_released_and_a_checkpoint_together_is_one_line(capsys, tmp_path):
    one_line_error(capsys, ["import-prompt", "x", "--released", "--out", str(tmp_path / "o")],
                   names=("CHECKPOINT", "--released"))
    one_line_error(capsys, ["import-prompt", "--out", str(tmp_path / "o")], fix="--released")


def test_hub_ids_are_told_apart_from_local_paths(tmp_path, monkeypatch):
    assert vhub.is_hub_id("MAGAer13/mplug-owl2-llama2-7b") and vhub.is_hub_id("llava-hf/llava-1.5-7b-hf@main")
    assert not vhub.is_hub_id("tiny") and not vhub.is_hub_id("/abs/path") and not vhub.is_hub_id("./a/b")
    assert not vhub.is_hub_id(str(tmp_path))
    assert vhub.split_hub_id("a/b@v1.0") == ("a/b", "v1.0")
    assert Path(paper.SPLIT_FILES["kadid"].path).name == "split_kadid10k.csv"
    monkeypatch.delenv(paper.PAPER_FILES_URL_VARIABLE, raising=False)
    assert paper.paper_files_url() == ("https://raw.githubusercontent.com/yahya-ben/mplug2-vp-for-nriqa/"
                                       "4c56315a76c4b0c40cc3af725bbe8ffea64d40b0")
    monkeypatch.setenv(paper.PAPER_FILES_URL_VARIABLE, "http://mirror.example/paper/")
    assert paper.paper_files_url() == "http://mirror.example/paper"


def test_the_released_profile_tests_the_released_prompts_and_the_notebooks_train_nothing(served, capsys):
    """`vpkit reproduce --profile released` before its notebooks: released_runs imports and tests each prompt; the
    training notebooks' run_experiments then finds the runs finished. The tiny model's 224 px input takes the
    paper's 30 px at 448 as 15 px, so this archive holds 15 px prompts at 224."""
    from vpkit import reproduce
    from vpkit.runs import collect_runs

    served.hub.add_repo("vpkit-test/released-224", {paper.RELEASED_ARCHIVE: released_zip(15, 224)})
    root = served.root / "data"
    assert main(["data", "download", "kadid", "--to", str(root)]) == 0
    parameters = reproduce.profile_parameters(reproduce.load_profile("released"), {
        "model": "tiny-random", "device": "cpu", "data_root": str(root), "experiments": [4, 7]}, served.root / "out")
    settings = reproduce.notebook_settings(progress=False, **parameters)
    capsys.readouterr()
    assert reproduce.released_runs(settings, "vpkit-test/released-224", progress=False) == [4]
    printed = capsys.readouterr().out
    assert "lacks experiment(s) 7" in printed and "exp_04_kadid_padding_30px_add: released prompt, test SRCC" in printed
    runs = reproduce.run_experiments([4], settings, progress=False)
    assert "exp_04_kadid_padding_30px_add: imported earlier with these settings, reused" in capsys.readouterr().out
    assert runs.loc[0, "status"] == "finished" and runs.loc[0, "test_n_images"] == 3
    assert collect_runs(settings.runs_dir)["name"].tolist() == ["exp_04_kadid_padding_30px_add"]


def test_revision_without_a_hub_model_is_one_line(capsys, tmp_path):
    one_line_error(capsys, ["eval", "--zero-shot", "--revision", "v1", "--dataset", "kadid",
                            "--data-root", str(tmp_path)], names=("--revision",), fix="--model")
    one_line_error(capsys, ["train", "4", "--model", "tiny", "--revision", "v1", "--data-root", str(tmp_path)],
                   names=("--revision v1", "'tiny'"))


def test_a_second_download_into_the_same_root_is_refused_while_one_runs(tmp_path):
    from filelock import FileLock

    from vpkit.data.download import LOCK_FILE, download

    with FileLock(tmp_path / LOCK_FILE), raises_one_line(vhub.FetchError, names=(tmp_path, "vpkit data download")):
        download(["kadid"], tmp_path, out=lambda line: None)
