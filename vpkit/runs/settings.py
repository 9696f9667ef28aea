"""A run's settings: its config.yaml, and whether (and how) the settings asked for differ from the ones the run
was made with (operational fields, such as the device, aside)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vpkit.atomic import write_text_atomic
from vpkit.runs.files import CONFIG_FILE, RunFolderError
from vpkit.runs.state import check_run_format, read_state


def write_config(run_dir: str | Path, config) -> None:
    write_text_atomic(Path(run_dir) / CONFIG_FILE, config.to_yaml())


def read_config(run_dir: str | Path):
    from vpkit.config import config_from_dict, load_yaml_file

    path = Path(run_dir) / CONFIG_FILE
    if not path.is_file():
        raise RunFolderError(f"{path}: missing; {run_dir} is not a vpkit run folder")
    check_run_format(run_dir)  # every reader of a run folder (resume, reuse, eval, tables) comes through here
    return config_from_dict(load_yaml_file(path), str(path))


@dataclass(frozen=True)
class RunComparison:
    """A run folder's recorded config beside the config that would run there now."""

    recorded: Any  # the ExperimentConfig in config.yaml
    recorded_hash: str  # the config hash the run was started under (state.json's; config.yaml's before a state)
    expected: Any  # the config asked for, resolved as training resolves it

    @property
    def same(self) -> bool:
        """The folder holds a run of these settings (operational fields, such as the device, aside)."""
        return self.expected.hash() == self.recorded_hash

    def changed(self) -> list[tuple[str, str | None]]:
        return changed_settings(self.recorded, self.expected)


def compare_with_run(run_dir: str | Path, config, device: str, image_size: int | None = None) -> RunComparison:
    """Is the run recorded in `run_dir` a run of `config` on `device`? `config` is first resolved as training
    resolves it (vpkit.config.resolve_for_model: the precision `device` uses, the prompt size at `image_size`,
    the model's input size; by default the one the run recorded, for callers that have no model loaded)."""
    from vpkit.config import resolve_for_model

    recorded, state = read_config(run_dir), read_state(run_dir)
    # state.json's hash, not one of config.yaml read back: a config.yaml that lacks a setting added since reads
    # back with today's default, which the run did not use
    recorded_hash = recorded.hash() if state is None else state.config_hash
    size = recorded.prompt.image_size if image_size is None else image_size
    return RunComparison(recorded, recorded_hash, resolve_for_model(config, size, device)[0])


def other_settings_message(run_dir: str | Path, recorded, config) -> str:
    """Why the run recorded in `run_dir` (its config `recorded`) is not a run of `config`, and what to do."""
    changed = "; ".join(config_differences(recorded, config))
    edited = edited_config_hash(run_dir, recorded)
    if edited is not None:
        return (f"{run_dir}: its config.yaml was changed after the run recorded it (its settings hash to "
                f"{recorded.hash()}, but the run and its checkpoints were made with {edited}: edited by hand?), so "
                "what the run trained with is unknown" + (f"; the command differs from it too ({changed})" if changed
                                                          else "")
                + "; undo the edit to continue the run, or train it again with --overwrite (or into another --out)")
    return (f"{run_dir}: holds a run of other settings ({changed or 'none visible'}); "
            "use the same settings, another --out, or --overwrite to start again")


def edited_config_hash(run_dir: str | Path, recorded) -> str | None:
    """The config hash a run recorded (state.json) when its config.yaml (read as `recorded`) no longer hashes to
    it: the file was edited after the run started. None when it does, or with no state.json yet."""
    state = read_state(run_dir)
    if state is None or state.config_hash == recorded.hash():
        return None
    return state.config_hash


def changed_settings(old, new) -> list[tuple[str, str | None]]:
    """(section, key) of each setting in the config hash that differs between two configs; (name, None) for a
    top-level value. Operational settings (device, workers, cache, data root) are not part of a run's identity."""
    from vpkit.config import OPERATIONAL_FIELDS

    old_dict, new_dict = old.to_dict(), new.to_dict()
    changed = []
    for section, values in new_dict.items():
        if isinstance(values, dict):
            changed += [(section, key) for key, value in values.items()
                        if old_dict[section].get(key) != value and key not in OPERATIONAL_FIELDS.get(section, ())]
        elif old_dict.get(section) != values:
            changed.append((section, None))
    return changed


def config_differences(old, new) -> list[str]:
    """'section.key: old -> new' for each setting in the config hash that differs."""
    old_dict, new_dict = old.to_dict(), new.to_dict()
    lines = []
    for section, key in changed_settings(old, new):
        if key is None:
            lines.append(f"{section}: {old_dict.get(section)!r} -> {new_dict[section]!r}")
        else:
            lines.append(f"{section}.{key}: {old_dict[section].get(key)!r} -> {new_dict[section][key]!r}")
    return lines
