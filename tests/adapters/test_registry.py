import textwrap

import anndata as ad
import pandas as pd
import pytest

from cradle_jax.adapters import ADAPTERS, load_adapter
from cradle_jax.adapters.contract import check_contract, describe
from cradle_jax.data.errors import DataError
from tests.adapters.conftest import GENES, cell_names, poisson_counts
from tests.adapters.test_norman import norman_input

USER_ADAPTER = """
import anndata as ad

def prepare(adata):
    obs = adata.obs.rename(columns={"condition": "perturbation"})
    obs["perturbation"] = obs["perturbation"].replace({"ctrl": "non-targeting"}).str.replace(
        " & ", "+"
    )
    return ad.AnnData(adata.X, obs=obs[["perturbation"]], var=adata.var)
"""


def test_builtin_names():
    assert set(ADAPTERS) == {"norman", "dixit", "replogle", "adamson"}
    assert load_adapter("norman") is ADAPTERS["norman"]


def test_unknown_name_lists_the_known_ones():
    with pytest.raises(DataError, match=r"unknown adapter 'normann'.*adamson, dixit, norman"):
        load_adapter("normann")


def test_user_adapter_file(tmp_path):
    path = tmp_path / "my_layout.py"
    path.write_text(textwrap.dedent(USER_ADAPTER))
    conditions = ["ctrl"] * 6 + ["A"] * 6 + ["B"] * 6 + ["A & B"] * 6
    adata = ad.AnnData(
        poisson_counts(len(conditions)),
        obs=pd.DataFrame({"condition": conditions}, index=cell_names(len(conditions))),
        var=pd.DataFrame(index=GENES),
    )
    prepared = load_adapter(str(path))(adata)
    summary = check_contract(prepared)
    assert (
        prepared.obs["perturbation"].tolist()
        == ["non-targeting"] * 6 + conditions[6:18] + ["A+B"] * 6
    )
    assert summary | {"qc_metrics_in_obs": None} == {
        "cells": 24,
        "genes": len(GENES),
        "perturbations": 2,
        "combinations": 1,
        "combination_cells": 6,
        "control_cells": 6,
        "qc_metrics_in_obs": None,
        "dropped_cells": {},
        "dropped_genes": {},
    }


def test_bad_user_files_are_errors(tmp_path):
    with pytest.raises(DataError, match=r"adapter file .*nothing\.py does not exist"):
        load_adapter(str(tmp_path / "nothing.py"))
    no_prepare = tmp_path / "no_prepare.py"
    no_prepare.write_text("def prepared(adata):\n    return adata\n")
    with pytest.raises(DataError, match="defines no function prepare"):
        load_adapter(str(no_prepare))
    broken = tmp_path / "broken.py"
    broken.write_text("def prepare(adata)\n")
    with pytest.raises(DataError, match="failed to import \\(SyntaxError"):
        load_adapter(str(broken))


def test_contract_check_refuses_what_the_loader_would():
    with pytest.raises(DataError, match="returned a dict, not an AnnData"):
        check_contract({})
    adata, _ = norman_input()  # unprepared: log values in X, counts in a layer, no labels
    with pytest.raises(DataError, match="non-integer counts"):
        check_contract(adata)
    adata.X = adata.layers["counts"]
    with pytest.raises(DataError, match="perturbation column 'perturbation' not in obs"):
        check_contract(adata)


def test_summary_paragraph():
    adata, _ = norman_input()
    summary = check_contract(ADAPTERS["norman"](adata))
    text = describe(summary | {"dropped_cells": {"more than 2 guides": 3}})
    assert text.startswith(f"{adata.n_obs} cells x {len(GENES)} genes; 4 perturbations, ")
    assert "3 combinations (18 cells), 9 control cells; QC metrics computed when loaded." in text
    assert text.endswith("Dropped cells: 3 more than 2 guides.")
