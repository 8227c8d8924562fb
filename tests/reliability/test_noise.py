"""One line per problem: no library warnings and no repeated lines for one cause."""

import logging
import warnings

from tests.reliability.builders import tiny_adata, write
from tests.reliability.harness import run_cli

QC_COLUMNS = (
    "UMI_count", "ngenes", "pct_counts_mt", "pct_counts_ribo", "pct_counts_hb", "predicted_doublet"
)  # fmt: skip


def test_inspect_of_a_one_gene_file_prints_no_numpy_warnings(tmp_path):
    adata = tiny_adata(30)[:, :1].copy()
    for column in QC_COLUMNS:
        del adata.obs[column]  # computed, Scrublet included, on one gene
    data = write(adata, tmp_path / "one_gene.h5ad")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        outcome = run_cli("inspect", f"--data={data}")
    assert outcome.code == 0, outcome.err
    assert "not available: predicted_doublet" in outcome.out
    runtime = [w for w in caught if issubclass(w.category, RuntimeWarning)]
    assert not runtime, [str(w.message) for w in runtime]


def test_generate_says_once_that_scrublet_had_too_few_cells(trained_run, tmp_path, caplog):
    with caplog.at_level(logging.WARNING):
        outcome = run_cli(
            "generate", f"--workdir={trained_run}", "--perturbations=A,B", "--n_cells=20",
            f"--out={tmp_path / 'cells.h5ad'}",
        )  # fmt: skip
    assert outcome.code == 0, outcome.err
    lines = [r.getMessage() for r in caplog.records if "Scrublet needs" in r.getMessage()]
    assert len(lines) == 1, lines
