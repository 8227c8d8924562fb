"""Records written before the loss terms, the artifact site and the reference batch field were
renamed (docs/method.md#objective) still load: a checkpoint's running sums and a metrics file
continue under today's names, and the stored parameter names never carried a renamed one."""

import json
from pathlib import Path

import jax
import pytest

from cradle_jax.config import load_config_file
from cradle_jax.train.bundle import param_shapes
from cradle_jax.train.loop import train_and_evaluate
from cradle_jax.train.state import RENAMED_TERMS, Progress
from tests.tiny_model import tiny_config as tiny_model_config
from tests.train.conftest import CONFIGS, tiny_config

OLD_NAMES = ("cfX", "qc_E", "cf_KLdivergence")
NEW_NAMES = ("reference_X", "artifact_E", "counterfactual_kl")


def _with_old_names(text: str) -> str:
    """`text` as the version before the rename would have written it."""
    for old, new in RENAMED_TERMS.items():
        text = text.replace(new, old)
    return text


def test_a_progress_saved_under_the_old_names_sums_under_the_new_ones():
    sums = {"loss": 3.0, "counterfactual_kl": 1.0, "loss_term_artifact_E": 2.0}
    saved = Progress(epoch=1, batch=4, epoch_sums=sums, epoch_cells=320)
    old = json.loads(_with_old_names(json.dumps(saved.to_dict())))
    assert set(old["epoch_sums"]) == {"loss", "cf_KLdivergence", "loss_term_qc_E"}
    assert Progress.from_dict(old) == saved


def _progress_files(workdir: Path) -> list[Path]:
    return list((workdir / "checkpoints" / "latest").glob("*/progress/*"))


def test_a_run_checkpointed_mid_epoch_under_the_old_names_resumes_to_the_same_records(
    reference_run, sim_path, tmp_path
):
    train_and_evaluate(tiny_config(sim_path, **{"train.max_steps": 13}), tmp_path)
    renamed = [*_progress_files(tmp_path), tmp_path / "metrics.jsonl"]
    for path in renamed:
        path.write_text(_with_old_names(path.read_text()))
    assert any("cf_KLdivergence" in p.read_text() for p in _progress_files(tmp_path))
    train_and_evaluate(tiny_config(sim_path), tmp_path)
    resumed, uninterrupted = (
        [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
        for run in (tmp_path, reference_run)
    )
    epochs = [r for r in uninterrupted if "epoch" in r]
    assert [r for r in resumed if "epoch" in r] == epochs
    assert "train/counterfactual_kl" in epochs[-1]
    assert not any(old in json.dumps(resumed) for old in OLD_NAMES)


@pytest.mark.parametrize("name", ["cradle", "sams_vae", "cvae", "svae_plus"])
def test_no_stored_parameter_name_carries_a_renamed_name(name):
    """Checkpoints and exports store the parameters by these paths, so theirs are the same
    before and after the rename."""
    paths = jax.tree_util.tree_flatten_with_path(param_shapes(tiny_model_config(name=name)))[0]
    stored = " ".join(jax.tree_util.keystr(path) for path, _ in paths)
    assert not any(n in stored for n in (*OLD_NAMES, *NEW_NAMES))


def test_the_recorded_config_carries_no_renamed_name():
    """model.json and exports record the config; no field of it was renamed."""
    recorded = load_config_file(CONFIGS / "default.py").to_json()
    assert not any(n in recorded for n in (*OLD_NAMES, *NEW_NAMES))
