"""What a real screen brings that a clean file does not: said out loud, not passed silently."""

import logging

import pytest

from cradle_jax.cli.setting_flags import message_for
from cradle_jax.data.errors import DataError
from tests.reliability.builders import FAST, tiny_adata, write
from tests.reliability.harness import assert_user_error, run_cli
from tests.train.conftest import cli_overrides


def test_a_failed_guide_assignment_label_is_flagged_by_inspect(tmp_path, caplog):
    data = write(
        tiny_adata(10, labels=("non-targeting", "A", "B", "unassigned")), tmp_path / "d.h5ad"
    )
    with caplog.at_level(logging.WARNING):
        outcome = run_cli("inspect", f"--data={data}")
    assert outcome.code == 0, outcome.err
    assert "warning: perturbation 'unassigned' looks like a failed guide assignment" in outcome.out
    logged = [r.getMessage() for r in caplog.records if "unassigned" in r.getMessage()]
    assert logged
    assert "(10 cells)" in logged[0]


def test_a_clean_file_has_no_such_warning(tmp_path):
    data = write(tiny_adata(10), tmp_path / "d.h5ad")
    outcome = run_cli("inspect", f"--data={data}")
    assert outcome.code == 0, outcome.err
    assert "failed guide assignment" not in outcome.out


@pytest.mark.parametrize(
    ("command", "fix", "not_named"),
    [
        ("inspect", "; give --control_label=VALUE", "--config."),
        ("train", "; give --config.data.control_label=VALUE", "give --control_label"),
        ("predict", "; the --real file must follow the model's data.control_label", "give"),
    ],
)
def test_a_missing_control_label_names_the_flag_of_the_command_run(
    command, fix, not_named, exported, tmp_path
):
    data = write(tiny_adata(10, labels=("ctrl", "A", "B")), tmp_path / "d.h5ad")
    args = {
        "inspect": [f"--data={data}"],
        "train": [*cli_overrides(data, **FAST), f"--workdir={tmp_path / 'run'}"],
        "predict": [f"--export={exported}", "--perturbations=A", f"--real={data}",
                    f"--out={tmp_path / 'p.h5ad'}", f"--real_out={tmp_path / 'r.h5ad'}"],
    }[command]  # fmt: skip
    outcome = run_cli(command, *args)
    assert_user_error(outcome, "control label 'non-targeting' not found", fix)
    assert not_named not in outcome.error_lines[0]


@pytest.mark.parametrize(
    ("command", "fix"),
    [
        ("sweep", "give --set data.control_label=VALUE (or set it in the sweep file)"),
        ("evaluate", "the run was trained with this data.control_label (its config.json)"),
        ("export", "the run was trained with this data.control_label (its config.json)"),
        ("prepare", "the prepared file must follow the data contract"),
    ],
)
def test_every_command_says_how_it_sets_a_data_field(command, fix):
    err = DataError("control label 'x' not found", setting="data.control_label")
    assert str(err) == "control label 'x' not found; set data.control_label"
    assert message_for(command, err).startswith(f"control label 'x' not found; {fix}")
    assert message_for(command, DataError("no setting")) == "no setting"


def test_the_readme_adapter_example_drops_unassigned_cells(tmp_path):
    """The README's own-adapter example, run by `prepare` on a file with unassigned cells."""
    import re
    from pathlib import Path

    import anndata as ad

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    example = re.search(
        r"```python\n(import numpy as np\nfrom cradle_jax.adapters.*?)```", readme, re.S
    )
    assert example, "the README's adapter example is missing"
    adapter = tmp_path / "my_screen.py"
    adapter.write_text(example.group(1))
    adata = tiny_adata(10, labels=("NTC", "A", "B", "unassigned"))
    adata.obs["gene"] = adata.obs.pop("perturbation")
    data = write(adata, tmp_path / "screen.h5ad")
    out = tmp_path / "ready.h5ad"
    outcome = run_cli("prepare", f"--adapter={adapter}", f"--in={data}", f"--out={out}")
    assert outcome.code == 0, outcome.err
    ready = ad.read_h5ad(out)
    assert sorted(set(ready.obs["perturbation"])) == ["A", "B", "non-targeting"]
    provenance = ready.uns["cradle_jax_prepare"]
    assert provenance["dropped_cells"] == {"no confident guide": 10}
    assert provenance["input_cells"] == 40
