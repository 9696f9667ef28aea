"""Run folders: one module per job, the names callers use importable from here.

    files           what a run folder holds (its file names) and RunFolderError
    lock            one process owns a run folder at a time (lock_run_dir, RunFolderBusy)
    checkpoint      the prompt checkpoint format: save, load, refuse one of another run
    state           a run's progress (state.json, the epoch rows), its status, what a training there does,
                    and the format-version check
    settings        config.yaml, and how the settings asked for differ from the run's
    data_identity   what a run trained on (data.json, data-images.csv) and the refusal of other data
    collect         reading runs back and collecting them into a table

Names are imported on first use: a caller loads only the modules behind the names it uses."""
from __future__ import annotations

from vpkit.lazy_exports import lazy_exports

_EXPORTS = {
    "files": (
        "BEST_CHECKPOINT", "CONFIG_FILE", "LOCK_FILE", "OWNER_FILE", "PREDICTIONS_FILE", "TEST_FILE", "RunFolderError",
    ),
    "lock": ("RunFolderBusy", "lock_run_dir"),
    "checkpoint": (
        "check_checkpoint_matches", "copy_checkpoint", "epoch_checkpoint_name", "load_checkpoint_tensors",
        "load_prompt_checkpoint", "prompt_checkpoint_metadata", "prompt_spec_of", "save_prompt_checkpoint",
        "torch_save_atomic",
    ),
    "state": (
        "RunFormatError", "RunState", "check_run_format", "clear_run_dir", "prepare_run_dir", "read_metrics",
        "read_state", "run_dir_action", "run_status", "write_metrics", "write_state",
    ),
    "settings": (
        "compare_with_run", "config_differences", "edited_config_hash", "other_settings_message", "read_config",
        "write_config",
    ),
    "data_identity": (
        "SPLITS", "check_same_data", "data_images", "data_record", "images_fingerprint", "write_data_record",
    ),
    "collect": ("RunRecord", "collect_runs", "read_predictions", "read_run", "read_test"),
}
__all__ = [  # the same names as _EXPORTS, spelled out for tools that read __all__
    "BEST_CHECKPOINT", "CONFIG_FILE", "LOCK_FILE", "OWNER_FILE", "PREDICTIONS_FILE", "SPLITS", "TEST_FILE",
    "RunFolderBusy", "RunFolderError", "RunFormatError", "RunRecord", "RunState",
    "check_checkpoint_matches", "check_run_format", "check_same_data", "clear_run_dir", "collect_runs",
    "compare_with_run", "config_differences", "copy_checkpoint", "data_images", "data_record", "edited_config_hash",
    "epoch_checkpoint_name", "images_fingerprint", "load_checkpoint_tensors", "load_prompt_checkpoint",
    "lock_run_dir", "other_settings_message", "prepare_run_dir", "prompt_checkpoint_metadata", "prompt_spec_of",
    "read_config", "read_metrics", "read_predictions", "read_run", "read_state", "read_test", "run_dir_action",
    "run_status", "save_prompt_checkpoint", "torch_save_atomic", "write_config", "write_data_record",
    "write_metrics", "write_state",
]


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
