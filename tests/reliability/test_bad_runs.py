"""Workdirs, checkpoints and exports that cannot be used, and bad requests to evaluate and
generate: one named error line, exit status 2, and nothing written or changed."""

import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from cradle_jax.evaluate.report.export import export_model, load_export
from cradle_jax.train.bundle import param_shapes
from tests.reliability.builders import FAST
from tests.reliability.harness import assert_user_error, run_cli, snapshot
from tests.train.conftest import cli_overrides


def rewritten_export(source: Path, path: Path, change) -> Path:
    """A copy of an export with `change(arrays, meta)` applied to its arrays and JSON record."""
    with np.load(source) as stored:
        arrays = {name: stored[name] for name in stored.files}
    meta = json.loads(str(arrays.pop("meta")))
    change(arrays, meta)
    with open(path, "wb") as handle:
        np.savez(handle, **arrays, meta=np.array(json.dumps(meta)))
    return path


def copied(workdir: Path, folder: Path) -> Path:
    return Path(shutil.copytree(workdir, folder / "copy"))


# --- workdirs and checkpoints (train) ---------------------------------------------------------


def train(data: Path, workdir: Path, *extra: str, **overrides):
    return run_cli(
        "train", *cli_overrides(data, **{**FAST, **overrides}), f"--workdir={workdir}", *extra
    )


def test_workdir_under_a_read_only_folder(tiny_data, read_only_dir):
    workdir = read_only_dir / "cradle_jax_reliability_run"
    assert_user_error(train(tiny_data, workdir), "cannot create workdir", str(workdir))
    assert not workdir.exists()


def test_read_only_workdir(tiny_data, read_only_dir):
    before = snapshot(read_only_dir) if read_only_dir != Path("/sys") else None
    assert_user_error(train(tiny_data, read_only_dir), f"workdir {read_only_dir} is not writable")
    assert not (read_only_dir / "config.json").exists()
    if before is not None:
        assert snapshot(read_only_dir) == before


def test_workdir_that_is_a_file(tiny_data, tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("a file")
    assert_user_error(train(tiny_data, path), "cannot create workdir", "File exists")
    assert path.read_text() == "a file"


@pytest.mark.parametrize(
    ("extra", "overrides", "expect"),
    [
        ((), {"model.n_latent": 3}, "model.n_latent was 4, now 3"),
        (("--seed=5",), {}, "seed was 0, now 5"),
        ((), {"data.qc_threshold": 4}, "data.qc_threshold was 3, now 4"),
    ],
    ids=["model-shape", "seed", "data"],
)
def test_resume_with_a_changed_model_seed_or_data_field(
    extra, overrides, expect, tiny_data, trained_run
):
    before = snapshot(trained_run)
    outcome = train(tiny_data, trained_run, *extra, **overrides)
    assert_user_error(outcome, "cannot resume", expect)
    assert snapshot(trained_run) == before


def test_checkpoints_of_another_model_in_a_new_workdir(tiny_data, trained_run, tmp_path):
    workdir = tmp_path / "run"
    shutil.copytree(trained_run / "checkpoints", workdir / "checkpoints")
    before = snapshot(tmp_path)
    outcome = train(tiny_data, workdir, **{"model.n_latent": 3})
    assert_user_error(outcome, "checkpoints/ but no config.json")
    assert snapshot(tmp_path) == before


def test_damaged_config_json(tiny_data, trained_run, tmp_path):
    workdir = copied(trained_run, tmp_path)
    (workdir / "config.json").write_text('{"seed": 0, "data": {')
    before = snapshot(tmp_path)
    assert_user_error(train(tiny_data, workdir), "config.json is damaged")
    assert snapshot(tmp_path) == before


# --- evaluate and export ------------------------------------------------------------------------


def test_evaluate_an_empty_or_missing_workdir(tmp_path):
    assert_user_error(run_cli("evaluate", f"--workdir={tmp_path}"), "holds no trained model")
    missing = tmp_path / "missing"
    assert_user_error(run_cli("evaluate", f"--workdir={missing}"), "holds no trained model")
    assert snapshot(tmp_path) == {}


def test_evaluate_a_workdir_without_its_statistics(trained_run, tmp_path):
    workdir = tmp_path / "run"
    workdir.mkdir()
    shutil.copy(trained_run / "model.json", workdir)
    before = snapshot(tmp_path)
    outcome = run_cli("evaluate", f"--workdir={workdir}", "--noplots")
    assert_user_error(outcome, "normalization.npz is missing")
    assert snapshot(tmp_path) == before


def newer_format(arrays, meta):
    meta["format_version"] = 99


def without_statistics(arrays, meta):
    del arrays["normalization/mean"]


def another_latent_size(arrays, meta):
    meta["model"]["n_latent"] = 3


@pytest.mark.parametrize(
    ("change", "expect"),
    [
        (newer_format, ("export format 99", "upgrade cradle-jax")),
        (without_statistics, ("incomplete export", "normalization/mean")),
        (another_latent_size, ("has parameter", "of shape (4,)", "builds (3,)")),
    ],
    ids=["newer-format", "incomplete", "other-shape"],
)
def test_unusable_export(change, expect, exported, tmp_path):
    path = rewritten_export(exported, tmp_path / "changed.cradle", change)
    before = snapshot(tmp_path)
    outcome = run_cli("evaluate", f"--export={path}", f"--out={tmp_path / 'results'}")
    assert_user_error(outcome, str(path), *expect)
    assert snapshot(tmp_path) == before


def truncated_export(source: Path, path: Path) -> Path:
    path.write_bytes(source.read_bytes()[: source.stat().st_size // 2])
    return path


def test_export_that_is_not_an_export(exported, tiny_data, tmp_path):
    truncated = truncated_export(exported, tmp_path / "truncated.cradle")
    for path, expect in (
        (truncated, "is not a cradle-jax export"),
        (tiny_data, "is not a cradle-jax export"),
        (tmp_path / "missing.cradle", "does not exist"),
    ):
        before = snapshot(tmp_path)
        outcome = run_cli(
            "generate", f"--export={path}", "--perturbations=A", f"--out={tmp_path / 'c.h5ad'}"
        )
        assert_user_error(outcome, str(path), expect)
        assert snapshot(tmp_path) == before


@pytest.mark.parametrize(
    ("out", "expect"), [("missing/model.cradle", "does not exist"), (".", "is a directory")]
)
def test_export_out_that_cannot_be_written(out, expect, trained_run, tmp_path):
    before = snapshot(tmp_path, trained_run)
    outcome = run_cli("export", f"--workdir={trained_run}", f"--out={tmp_path / out}")
    assert_user_error(outcome, "--out", expect)
    assert snapshot(tmp_path, trained_run) == before


def test_evaluate_needs_one_model_and_an_out_folder(trained_run, exported, tmp_path):
    outcome = run_cli("evaluate", f"--workdir={trained_run}", f"--export={exported}")
    assert_user_error(outcome, "one of --workdir DIR or --export FILE")
    assert_user_error(run_cli("evaluate", f"--export={exported}"), "needs --out DIR")


# --- generate -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def svae_plus_export(exported, tmp_path_factory) -> Path:
    """An SVAE+ export (untrained parameters suffice: requests are checked before any use)."""
    bundle, reference = load_export(exported)
    cfg = dataclasses.replace(bundle.cfg, name="svae_plus")
    params = {
        name: np.zeros(shape.shape, shape.dtype) for name, shape in _flat(param_shapes(cfg)).items()
    }
    config = bundle.config.copy_and_resolve_references()
    config.model.name = "svae_plus"
    svae = dataclasses.replace(bundle, cfg=cfg, config=config, params=_nested(params))
    return export_model(svae, reference, tmp_path_factory.mktemp("svae") / "svae.cradle")


def _flat(tree: dict, prefix: tuple = ()) -> dict:
    out = {}
    for key, value in tree.items():
        out.update(
            _flat(value, (*prefix, key)) if isinstance(value, dict) else {(*prefix, key): value}
        )
    return out


def _nested(flat: dict) -> dict:
    tree: dict = {}
    for path, value in flat.items():
        node = tree
        for key in path[:-1]:
            node = node.setdefault(key, {})
        node[path[-1]] = value
    return tree


@pytest.mark.parametrize(
    ("flags", "expect"),
    [
        (["--perturbations=A,Q"], ("unknown perturbation 'Q'",)),
        (["--perturbations=A+Q"], ("unknown perturbation 'Q' in 'A+Q'",)),
        (["--perturbations=,"], ("no perturbation given",)),
        (["--perturbations=A", "--n_cells=0"], ("--n_cells must be at least 1",)),
        (["--perturbations=A", "--library=-5"], ("--library", "-5")),
        (["--perturbations=A,B,A"], ("'A' twice",)),
        (["--perturbations=A+B,B+A"], ("'B+A' twice", "as 'A+B'")),
    ],
    ids=[
        "unknown",
        "unknown-in-combination",
        "none",
        "no-cells",
        "negative-library",
        "duplicate",
        "same-pair-in-two-orders",
    ],
)
def test_bad_generate_request(flags, expect, trained_run, tmp_path):
    before = snapshot(tmp_path, trained_run)
    outcome = run_cli(
        "generate", f"--workdir={trained_run}", *flags, f"--out={tmp_path / 'c.h5ad'}"
    )
    assert_user_error(outcome, *expect)
    assert snapshot(tmp_path, trained_run) == before


def test_generate_out_into_a_missing_folder(trained_run, tmp_path):
    out = tmp_path / "missing" / "cells.h5ad"
    outcome = run_cli("generate", f"--workdir={trained_run}", "--perturbations=A", f"--out={out}")
    assert_user_error(outcome, f"directory {out.parent} does not exist")
    assert snapshot(tmp_path) == {}


def test_generate_a_combination_from_svae_plus(svae_plus_export, tmp_path):
    outcome = run_cli(
        "generate",
        f"--export={svae_plus_export}",
        "--perturbations=A+B",
        f"--out={tmp_path / 'c.h5ad'}",
    )
    assert_user_error(outcome, "model.name=svae_plus", "'A+B'")
    assert snapshot(tmp_path) == {}


def test_generate_out_into_a_read_only_folder_fails_before_the_work(trained_run, read_only_dir):
    out = read_only_dir / "cells.h5ad"
    outcome = run_cli("generate", f"--workdir={trained_run}", "--perturbations=A", f"--out={out}")
    assert_user_error(outcome, f"directory {read_only_dir} is not writable")
    assert not out.exists()


def test_a_full_disk_while_checkpointing_is_one_line_and_the_next_launch_resumes(
    tiny_data, tmp_path, monkeypatch
):
    import errno

    import orbax.checkpoint as ocp

    workdir = tmp_path / "run"
    real_save = ocp.CheckpointManager.save
    calls = []

    def save_until_the_disk_fills(manager, step, *args, **kwargs):
        calls.append(step)
        if len(calls) < 2:
            return real_save(manager, step, *args, **kwargs)
        partial = Path(manager.directory) / f"{step}.orbax-checkpoint-tmp-1700000000"
        partial.mkdir(parents=True)
        try:
            raise OSError(errno.ENOSPC, "No space left on device")
        except OSError as err:
            raise ValueError("tensorstore write failed") from err

    monkeypatch.setattr(ocp.CheckpointManager, "save", save_until_the_disk_fills)
    flags = cli_overrides(tiny_data, **{**FAST, "train.max_epochs": 2})
    outcome = run_cli("train", *flags, f"--workdir={workdir}")
    assert_user_error(outcome, "no space left on the disk of workdir", str(workdir))
    assert not list(workdir.rglob("*.orbax-checkpoint-tmp*"))
    monkeypatch.setattr(ocp.CheckpointManager, "save", real_save)
    outcome = run_cli("train", *flags, f"--workdir={workdir}")
    assert outcome.code == 0, outcome.err
    assert (workdir / "model.json").exists()
