"""What a run folder holds (the names of its files), and the error every run-folder problem raises.

A run folder holds

    config.yaml            the resolved config (what actually ran)
    metrics.csv/.jsonl     one row per finished epoch
    epoch-NN.safetensors   the prompt after epoch NN (paper key names; metadata: config hash, epoch, metrics)
    best.safetensors       the prompt of the best epoch
    state.json             progress: last finished epoch, best epoch, patience counter, finished flag
    trainer-state-NN.pt    optimizer, grad-scaler and RNG states after epoch NN, for an exact resume
    test.json              test metrics of the best prompt
    predictions.csv        name, mos, label, score on the test split
    data.json              what the run trained on: dataset, root, layout, split, fingerprints of the image list
                           and of the image files' bytes
    data-images.csv        that image list: name, split, label and file_digest of every image the run used
    provenance.json        the folder's format version, and who made it: vpkit, torch, CUDA, host, device,
                           the model's and the data's source, start and end of each session (vpkit.provenance)
    .vpkit.lock            the OS lock of the process that owns the folder (.vpkit-owner.json says who)

`state.json` is written last in each epoch, so a run killed at any point resumes from the last epoch
that `state.json` names.
"""

from __future__ import annotations

import json
from pathlib import Path

from vpkit import provenance

CONFIG_FILE = "config.yaml"
METRICS_CSV = "metrics.csv"
METRICS_JSONL = "metrics.jsonl"
STATE_FILE = "state.json"
BEST_CHECKPOINT = "best.safetensors"
TEST_FILE = "test.json"
PREDICTIONS_FILE = "predictions.csv"
DATA_FILE = "data.json"
DATA_IMAGES_FILE = "data-images.csv"
PROVENANCE_FILE = provenance.RECORD_FILE
RUN_FILES = (
    CONFIG_FILE,
    METRICS_CSV,
    METRICS_JSONL,
    STATE_FILE,
    BEST_CHECKPOINT,
    TEST_FILE,
    PREDICTIONS_FILE,
    DATA_FILE,
    DATA_IMAGES_FILE,
    PROVENANCE_FILE,
)
RUN_FILE_PATTERNS = ("epoch-*.safetensors", "trainer-state-*.pt")
LOCK_FILE = ".vpkit.lock"
OWNER_FILE = ".vpkit-owner.json"


class RunFolderError(RuntimeError):
    """A run folder is missing, incomplete, or would be overwritten."""


def json_or_error(text: str, path: Path, where: str = ""):
    """json.loads, with a damaged file named in the error (not just 'Expecting value: line 1 ...')."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise RunFolderError(
            f"{path}{where}: damaged JSON ({error.msg}); restore the file or rerun with --overwrite"
        ) from None
