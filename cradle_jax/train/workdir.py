"""The run directory: its resolved config (config.json) and the rules for resuming in it.

Re-running with the same workdir resumes. The fields that decide what is trained (the seed, the
data and the model) must then be unchanged: a change is refused with the field named. Fields of
the loss and of run control (e.g. more epochs) may change; the new values are recorded.
"""

import json
import os
from pathlib import Path

import ml_collections

from cradle_jax import atomic
from cradle_jax.train.errors import RunError

CONFIG_NAME = "config.json"
CHECKPOINTS_DIR = "checkpoints"
FIXED_SECTIONS = ("seed", "data", "model")


def _flatten(values: dict, prefix: str = "") -> dict:
    flat = {}
    for key, value in values.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _check_resumable(saved: dict, current: dict, workdir: Path) -> list[str]:
    """Raise RunError on a changed seed/data/model field; return the other changed fields."""
    old, new = _flatten(saved), _flatten(current)
    changed = sorted(k for k in old.keys() | new.keys() if old.get(k) != new.get(k))
    refused = [
        f"{name} was {old.get(name)!r}, now {new.get(name)!r}"
        for name in changed
        if name.split(".")[0] in FIXED_SECTIONS
    ]
    if refused:
        raise RunError(
            f"cannot resume the run in {workdir} with a different seed, data or model: "
            f"{'; '.join(refused)}. Use the run's values or a new --workdir"
        )
    return changed


def _read_config(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise RunError(f"{path} is damaged (not JSON: {err}); use a new --workdir") from err


def prepare_workdir(
    workdir: str | os.PathLike, config: ml_collections.ConfigDict, primary: bool = True
) -> list[str]:
    """Create or reopen `workdir` for `config`; return the fields changed since the last run.

    Only the primary process writes config.json (atomically). Nothing is written when the
    workdir cannot be used (another run's config or stray checkpoints).
    """
    path = Path(workdir)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise RunError(f"cannot create workdir {path}: {err.strerror}") from err
    if not os.access(path, os.W_OK):
        raise RunError(f"workdir {path} is not writable")
    current = json.loads(config.to_json())
    config_path = path / CONFIG_NAME
    changed = []
    if config_path.exists():
        changed = _check_resumable(_read_config(config_path), current, path)
    elif (path / CHECKPOINTS_DIR).exists():
        # config.json is written before the first checkpoint, so these come from elsewhere
        # (another run's, perhaps of another model shape): resuming from them is refused.
        raise RunError(
            f"{path} holds {CHECKPOINTS_DIR}/ but no {CONFIG_NAME}, so they are not this run's "
            "checkpoints; use a new --workdir"
        )
    if primary:
        try:
            atomic.write_json(config_path, current)
        except OSError as err:  # os.access says yes to root on a read-only file system
            raise RunError(f"workdir {path} is not writable: {err.strerror}") from err
    return changed
