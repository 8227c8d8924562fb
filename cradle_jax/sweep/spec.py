"""A sweep file read and checked: its base config, and each run's name, overrides and config.

A sweep file is a Python module with `get_sweep()` returning `(base_config, overrides)`: the
path of an experiment config file and a list of override dicts, one per run (see `grid`).
Every override is applied to a copy of the base config before any run starts, so a misspelt
field or a value of the wrong type is an error naming it, not a failure at run 7 of 15.
"""

import difflib
import hashlib
import importlib.util
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import ml_collections

from cradle_jax.config import load_config_file
from cradle_jax.train.errors import RunError

UNSAFE = re.compile(r"[^A-Za-z0-9._+=,-]")
MAX_NAME = 80


class SweepError(RunError):
    """A sweep file or an override that cannot be used as given."""


@dataclass(frozen=True)
class SweepRun:
    """One run: its directory name, its own overrides and the config they give."""

    name: str
    overrides: dict[str, object]
    config: ml_collections.ConfigDict


@dataclass(frozen=True)
class Sweep:
    """The runs of a sweep file; `common` overrides (the command line's) apply to every run."""

    path: Path
    base_config: Path
    common: dict[str, object]
    runs: list[SweepRun]

    def to_json(self) -> dict:
        return {
            "sweep": str(self.path),
            "base_config": str(self.base_config),
            "common": self.common,
            "runs": [{"name": run.name, "overrides": run.overrides} for run in self.runs],
        }


def value_text(value: object) -> str:
    """A value as `--config.a.b=` reads it back: lower-case booleans, floats by repr."""
    if isinstance(value, bool):
        return str(value).lower()
    return repr(value) if isinstance(value, float) else str(value)


def run_name(overrides: Mapping[str, object]) -> str:
    """`key=value` pairs sorted by key and joined by commas, e.g.
    `data.qc_threshold=4,seed=1`; "base" for no overrides. Characters a file name should not
    hold become "_", and then, as for names over MAX_NAME characters, a hash of the overrides
    is appended so that different runs never share a directory."""
    if not overrides:
        return "base"
    plain = ",".join(f"{key}={value_text(overrides[key])}" for key in sorted(overrides))
    safe = UNSAFE.sub("_", plain)
    if safe == plain and len(plain) <= MAX_NAME:
        return plain
    canonical = json.dumps(overrides, sort_keys=True, default=str)
    digest = hashlib.sha1(canonical.encode()).hexdigest()[:8]
    return f"{safe[: MAX_NAME - 9]}-{digest}"


def field_value(config: ml_collections.ConfigDict, key: str) -> object:
    """The value of the dotted field `key` ("seed", "data.qc_threshold"); SweepError naming
    the field (and the nearest existing one) when the config has no such field."""
    node, path = config, []
    for part in key.split("."):
        if not isinstance(node, ml_collections.ConfigDict) or part not in node:
            fields = list(node.keys()) if isinstance(node, ml_collections.ConfigDict) else []
            prefix = ".".join(path) + "." if path else ""
            close = difflib.get_close_matches(part, fields, n=1)
            hint = f"; did you mean {prefix + close[0]!r}?" if close else ""
            raise SweepError(f"unknown config field {key!r}{hint}")
        node, path = node[part], [*path, part]
    if isinstance(node, ml_collections.ConfigDict):
        raise SweepError(f"{key!r} is a config section, not a field: name one of its fields")
    return node


def apply_overrides(
    config: ml_collections.ConfigDict, overrides: Mapping[str, object]
) -> ml_collections.ConfigDict:
    """A copy of `config` with the overrides set; SweepError for an unknown field or a value
    of the wrong type (a float for an int field, a number for a text field)."""
    config = config.copy_and_resolve_references()
    for key, value in overrides.items():
        current = field_value(config, key)
        if value is None:
            raise SweepError(f"{key}: None is not a value; give a {type(current).__name__}")
        *sections, field = key.split(".")
        node = config
        for section in sections:
            node = node[section]
        try:
            node[field] = value
        except TypeError as err:
            raise SweepError(
                f"{key}: {value!r} ({type(value).__name__}) does not fit the field's type "
                f"({type(current).__name__})"
            ) from err
    return config


def _resolve_base(base: str | Path, sweep_path: Path) -> Path:
    """A relative base config path is read from the current directory or from a folder above
    the sweep file (the repository root for experiments/sweeps/NAME.py)."""
    path = Path(base)
    candidates = [path] if path.is_absolute() else [Path.cwd() / path]
    if not path.is_absolute():
        candidates += [parent / path for parent in sweep_path.resolve().parents]
    for candidate in candidates:
        if candidate.is_file():
            return candidate.resolve()
    raise SweepError(
        f"{sweep_path}: base config {str(base)!r} not found in the current directory or a "
        f"folder above the sweep file"
    )


def read_sweep_file(path: str | Path) -> tuple[Path, list[dict[str, object]]]:
    """`get_sweep()` of a sweep file: the resolved base config path and the override list."""
    path = Path(path)
    if not path.is_file():
        raise SweepError(f"sweep file {str(path)!r} not found")
    spec = importlib.util.spec_from_file_location(f"sweep_{path.stem}", path)
    if spec is None or spec.loader is None:
        raise SweepError(f"sweep file {path} cannot be imported as Python")
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except Exception as err:  # the user's file: any error means it cannot be used
        raise SweepError(f"sweep file {path} failed to import ({_first_line(err)})") from err
    if not hasattr(module, "get_sweep"):
        raise SweepError(f"{path} has no get_sweep() returning (base config, overrides)")
    try:
        result = module.get_sweep()
    except Exception as err:
        raise SweepError(f"{path}: get_sweep() raised {_first_line(err)}") from err
    if not (isinstance(result, tuple) and len(result) == 2):
        raise SweepError(f"{path}: get_sweep() must return (base config path, list of dicts)")
    base, overrides = result
    if not all(isinstance(o, Mapping) and all(isinstance(k, str) for k in o) for o in overrides):
        raise SweepError(f"{path}: every override must be a dict of 'section.field' -> value")
    return _resolve_base(base, path), [dict(o) for o in overrides]


def _first_line(err: Exception) -> str:
    """`Type: message` on one line; a SyntaxError also names the line of the file."""
    where = f" (line {err.lineno})" if isinstance(err, SyntaxError) and err.lineno else ""
    text = str(err).splitlines()[0] if str(err) else ""
    return f"{type(err).__name__}: {text}{where}"


def load_sweep(path: str | Path, common: Mapping[str, object] | None = None) -> Sweep:
    """The sweep file's runs, each config built and checked; `common` applies to every run
    and may not set a field a run sets (one of the two would silently win)."""
    path = Path(path)
    base_path, overrides = read_sweep_file(path)
    base = load_config_file(base_path)
    common = dict(common or {})
    try:
        base = apply_overrides(base, common)
    except SweepError as err:
        raise SweepError(f"--set {err}") from err
    runs, names = [], {}
    for index, run_overrides in enumerate(overrides, 1):
        name = run_name(run_overrides)
        where = f"{path}, run {index} ({name})"
        shared = sorted(common.keys() & run_overrides.keys())
        if shared:
            raise SweepError(f"{where}: {', '.join(shared)} set both by --set and by the sweep")
        if name in names:
            raise SweepError(f"{where}: the same overrides as run {names[name]}")
        names[name] = index
        try:
            config = apply_overrides(base, run_overrides)
        except SweepError as err:
            raise SweepError(f"{where}: {err}") from err
        runs.append(SweepRun(name=name, overrides=run_overrides, config=config))
    return Sweep(path=path, base_config=base_path, common=common, runs=runs)
