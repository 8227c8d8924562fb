"""`cradle-jax prepare` as a user runs it: a subprocess, its exit code, its output file."""

import anndata as ad

from tests.adapters.test_norman import norman_input
from tests.test_cli import cradle_jax


def test_prepare_writes_a_file_the_contract_accepts(tmp_path):
    raw, expected = norman_input()
    raw.write_h5ad(tmp_path / "raw.h5ad")
    out = tmp_path / "ready.h5ad"
    result = cradle_jax(
        "prepare", "--adapter", "norman", "--in", str(tmp_path / "raw.h5ad"), f"--out={out}"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"wrote {out}: {len(expected)} cells x 20 genes; ")
    assert "4 perturbations, 3 combinations (18 cells), 9 control cells" in result.stdout
    prepared = ad.read_h5ad(out)
    assert prepared.obs["perturbation"].astype(str).tolist() == expected
    assert sorted(p.name for p in tmp_path.iterdir()) == ["raw.h5ad", "ready.h5ad"]


def test_unknown_adapter_is_one_line_exit_2_and_no_file(tmp_path):
    out = tmp_path / "ready.h5ad"
    result = cradle_jax(
        "prepare", "--adapter=normann", f"--in={tmp_path / 'raw.h5ad'}", f"--out={out}"
    )
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0, result.stderr
    assert "unknown adapter 'normann'" in result.stderr
    assert "adamson, dixit, norman, replogle" in result.stderr
    assert list(tmp_path.iterdir()) == []
