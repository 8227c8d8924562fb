"""Building override lists, and the sweep files shipped in experiments/sweeps/."""

import pytest

from cradle_jax.sweep.grid import product, zipped
from cradle_jax.sweep.spec import field_value, load_sweep
from tests.train.conftest import ROOT

SWEEPS = ROOT / "experiments" / "sweeps"


def test_product_of_axes_varies_the_first_axis_slowest():
    grid = product({"data.split_seed": range(2), "data.qc_threshold": [3, 4, 5]})
    assert grid == [
        {"data.split_seed": s, "data.qc_threshold": t} for s in range(2) for t in (3, 4, 5)
    ]


def test_product_combines_dict_and_list_factors():
    pairs = zipped({"model.name": ["cradle", "cvae"], "loss.beta": [0.5, 0.0]})
    assert pairs == [
        {"model.name": "cradle", "loss.beta": 0.5},
        {"model.name": "cvae", "loss.beta": 0.0},
    ]
    grid = product(pairs, {"seed": [0, 1]})
    assert len(grid) == 4
    assert grid[1] == {"model.name": "cradle", "loss.beta": 0.5, "seed": 1}
    assert product() == [{}]


def test_a_field_set_by_two_factors_or_uneven_zips_are_errors():
    with pytest.raises(ValueError, match=r"\['seed'\] set by two factors"):
        product({"seed": [0, 1]}, [{"seed": 2}])
    with pytest.raises(ValueError, match="different lengths"):
        zipped({"seed": [0, 1], "loss.beta": [0.1]})


@pytest.mark.parametrize(
    ("name", "seed_field"),
    [
        ("norman", "data.split_seed"),
        ("dixit", "data.split_seed"),
        ("replogle", "seed"),
        ("adamson", "seed"),
    ],
)
def test_the_paper_sweeps_are_five_seeds_by_three_thresholds(
    name, seed_field, monkeypatch, tmp_path
):
    monkeypatch.chdir(tmp_path)  # the base config is found from the sweep file's folder too
    sweep = load_sweep(SWEEPS / f"{name}.py", {"data.path": f"{name}.h5ad"})
    assert sweep.base_config == ROOT / "experiments" / "configs" / f"{name}.py"
    assert len(sweep.runs) == 15
    assert len({run.name for run in sweep.runs}) == 15
    cells = {
        (field_value(run.config, seed_field), run.config.data.qc_threshold) for run in sweep.runs
    }
    assert cells == {(s, t) for s in range(5) for t in (3, 4, 5)}
    assert all(run.config.data.path == f"{name}.h5ad" for run in sweep.runs)


def test_the_simulator_sweep_crosses_four_models_with_three_seeds():
    sweep = load_sweep(SWEEPS / "simulator_models.py")
    assert sweep.base_config.name == "synthetic_models.py"
    pairs = {(run.config.model.name, run.config.seed) for run in sweep.runs}
    assert pairs == {(m, s) for m in ("cradle", "sams_vae", "cvae", "svae_plus") for s in (0, 1, 2)}
