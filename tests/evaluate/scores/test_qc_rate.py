"""QC pass rate of generated cells (docs/metrics.md#qc-pass-rate) against NumPy recomputations.

Count matrices are built by hand so every metric is known; the "real" thresholds come from a
hand-made metric table with known medians and raw MADs.
"""

import dataclasses

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from cradle_jax.data.errors import DataError
from cradle_jax.data.qc import QCMetrics, fit_thresholds
from cradle_jax.evaluate.generation import qc_metrics
from cradle_jax.evaluate.generation.names import generated_cell_names
from cradle_jax.evaluate.scores import qc_rate

# 2 mitochondrial, 2 ribosomal, 1 haemoglobin and 7 other genes.
GENES = ["MT-CO1", "MT-ND1", "RPL3", "RPS6", "HBB", "GAPDH", "ACTB"] + [f"G{j}" for j in range(5)]
MT, RIBO, HB = slice(0, 2), slice(2, 4), slice(4, 5)
OTHER = slice(5, 12)

# Real data: medians UMI 1000, ngenes 11, mt 5 %, ribo 20 %, hb 0 %; raw MADs 100, 1, 1, 5, 0.
REAL = pd.DataFrame(
    {
        "UMI_count": [800.0, 900.0, 1000.0, 1100.0, 1200.0],
        "ngenes": [9.0, 10.0, 11.0, 12.0, 13.0],
        "pct_counts_mt": [3.0, 4.0, 5.0, 6.0, 7.0],
        "pct_counts_ribo": [10.0, 15.0, 20.0, 25.0, 30.0],
        "pct_counts_hb": [0.0, 0.0, 0.0, 0.0, 1.0],
        "predicted_doublet": [False, False, False, False, True],
    },
    index=[f"real{i}" for i in range(5)],
)
MEDIANS = {"UMI_count": 1000, "ngenes": 11, "pct_mt": 5, "pct_ribo": 20, "pct_hb": 0}
MADS = {"UMI_count": 100, "ngenes": 1, "pct_mt": 1, "pct_ribo": 5, "pct_hb": 0}


def real_thresholds():
    return fit_thresholds(QCMetrics(table=REAL, unavailable={}, source="obs"))


def cell(umi: int = 1000, mt: int = 40, ribo: int = 200, hb: int = 0) -> np.ndarray:
    """One cell's counts over GENES: the given totals, the rest spread over the 7 other genes."""
    x = np.zeros(len(GENES), dtype=np.float32)
    x[MT] = [mt - mt // 2, mt // 2]
    x[RIBO] = [ribo - ribo // 2, ribo // 2]
    x[HB] = hb
    rest = umi - mt - ribo - hb
    x[OTHER] = rest // 7
    x[OTHER.start] += rest - 7 * (rest // 7)
    return x


def expected_pass(x: np.ndarray, t: float) -> np.ndarray:
    """Pass (N,) bool from the counts and the hand-written real medians/MADs (strict rules)."""
    x = x.astype(np.float64)
    umi = x.sum(1)
    pct = {name: 100 * x[:, s].sum(1) / umi for name, s in (("mt", MT), ("ribo", RIBO), ("hb", HB))}
    fails = (
        (umi < MEDIANS["UMI_count"] - t * MADS["UMI_count"])
        | ((x > 0).sum(1) < MEDIANS["ngenes"] - t * MADS["ngenes"])
        | (pct["mt"] > MEDIANS["pct_mt"] + t * MADS["pct_mt"])
        | (pct["ribo"] > MEDIANS["pct_ribo"] + t * MADS["pct_ribo"])
        | (pct["hb"] > MEDIANS["pct_hb"] + t * MADS["pct_hb"])
    )
    return ~fails


def labels_of(n_per: int, names=("non-targeting", "A", "B"), seed: int = 0) -> np.ndarray:
    """`n_per` cells of each perturbation, interleaved in a shuffled order."""
    labels = np.repeat(np.array(names), n_per)
    return np.random.default_rng(seed).permutation(labels)


def test_all_pass_gives_exactly_one():
    labels = labels_of(20)
    x = np.stack([cell(umi=1000 + 5 * i, mt=30 + i % 20) for i in range(len(labels))])
    assert expected_pass(x, 3).all()
    metrics, rates = qc_rate.score_generated_cells(
        sp.csr_matrix(x), labels, GENES, real_thresholds(), seed=0, doublets=False
    )
    for t in (3, 4, 5):
        assert rates[f"qc_pass_rate_t{t}"] == 1.0
        assert rates["per_perturbation"][f"t{t}"] == {"non-targeting": 1.0, "A": 1.0, "B": 1.0}
    assert rates["criteria"] == [
        "qc_UMI_count",
        "qc_ngenes",
        "qc_pct_counts_mt",
        "qc_pct_counts_ribo",
        "qc_pct_counts_hb",
    ]
    assert metrics.unavailable == {"predicted_doublet": "doublet calling switched off"}


def test_mostly_failing_set_gives_the_pass_fraction_not_the_fail_fraction():
    rng = np.random.default_rng(1)
    labels = labels_of(40)
    # ~80 % with a mitochondrial share > 10 % (fails at t = 3, 4, 5), the rest < 8 % (passes),
    # so no share sits near a threshold where float32 rounding could decide.
    sick = rng.random(len(labels)) < 0.8
    mt = np.where(sick, rng.integers(150, 400, len(labels)), rng.integers(20, 50, len(labels)))
    umi = rng.integers(650, 1400, len(labels))  # some also below the UMI threshold at t = 3
    hb = (rng.random(len(labels)) < 0.05).astype(int)  # MAD 0: any hb count fails (E2)
    x = np.stack([cell(umi=u, mt=m, hb=h) for u, m, h in zip(umi, mt, hb, strict=True)])
    metrics = qc_metrics.generated_qc(x, labels, GENES, seed=0, doublets=False)
    rates = qc_rate.qc_pass_rates(metrics, labels, real_thresholds())
    for t in (3, 4, 5):
        passed = expected_pass(x, t)
        assert 0 < passed.mean() < 0.5
        assert rates[f"qc_pass_rate_t{t}"] == np.count_nonzero(passed) / len(labels)
        per = rates["per_perturbation"][f"t{t}"]
        assert list(per) == list(pd.unique(labels))
        for label, rate in per.items():
            assert rate == pytest.approx(passed[labels == label].mean(), abs=1e-12)
        shares = rates["fail_share"][f"t{t}"]
        pct_mt = 100 * x[:, MT].sum(1) / x.sum(1)
        hand_mt = pct_mt > MEDIANS["pct_mt"] + t * MADS["pct_mt"]
        assert shares["qc_pct_counts_mt"] == pytest.approx(hand_mt.mean(), abs=1e-12)
        assert shares["qc_pct_counts_hb"] == pytest.approx((hb > 0).mean(), abs=1e-12)


def test_real_thresholds_are_used_not_refitted_ones():
    labels = labels_of(10)
    # 12 % mitochondrial: far above the real threshold (5 + 3·1 = 8 %), but the generated cells
    # alone have median 12 and MAD 0, so thresholds refitted on them would pass every cell.
    x = np.stack([cell(mt=120) for _ in labels])
    metrics = qc_metrics.generated_qc(x, labels, GENES, seed=0, doublets=False)
    real = qc_rate.qc_pass_rates(metrics, labels, real_thresholds())
    refitted = qc_rate.qc_pass_rates(metrics, labels, fit_thresholds(metrics))
    assert refitted["qc_pass_rate_t3"] == 1.0
    assert not expected_pass(x, 5).any()
    assert all(real["fail_share"][f"t{t}"]["qc_pct_counts_mt"] == 1.0 for t in (3, 4, 5))
    del real["fail_share"]
    assert real == {
        "qc_pass_rate_t3": 0.0,
        "qc_pass_rate_t4": 0.0,
        "qc_pass_rate_t5": 0.0,
        "per_perturbation": {
            f"t{t}": {"non-targeting": 0.0, "A": 0.0, "B": 0.0} for t in (3, 4, 5)
        },
        "criteria": refitted["criteria"],
    }


def test_chunk_k_holds_positions_2k_and_2k_plus_1_of_every_perturbation():
    labels = labels_of(20)
    chunk = qc_metrics.chunk_assignment(labels, 10)
    for label in ("non-targeting", "A", "B"):
        np.testing.assert_array_equal(chunk[labels == label], np.arange(20) // 2)
    np.testing.assert_array_equal(np.bincount(chunk), np.full(10, 6))


def test_chunking_of_the_reference_layout_and_uneven_counts():
    labels = np.array(["A"] * 100 + ["B"] * 25 + ["C"] * 3)
    chunk = qc_metrics.chunk_assignment(labels, 10)
    np.testing.assert_array_equal(chunk[:100], np.arange(100) // 10)  # 10k … 10k+9
    assert np.bincount(chunk[100:125], minlength=10).tolist() == [3, 2] * 5
    assert chunk[125:].tolist() == [0, 3, 6]
    with pytest.raises(DataError, match="n_chunks"):
        qc_metrics.chunk_assignment(labels, 0)


def test_metrics_come_back_in_the_original_cell_order():
    labels = labels_of(20)
    rng = np.random.default_rng(2)
    x = np.stack([cell(umi=int(u), mt=40) for u in rng.integers(500, 2000, len(labels))])
    x[:, OTHER] += rng.integers(0, 3, size=(len(labels), 7)).astype(np.float32)
    x[rng.random(x.shape) < 0.1] = 0  # vary ngenes too
    metrics = qc_metrics.generated_qc(sp.csr_matrix(x), labels, GENES, seed=0, doublets=False)
    table = metrics.table
    assert list(table.index) == generated_cell_names(labels)
    np.testing.assert_array_equal(table["UMI_count"].to_numpy(), x.sum(1))
    np.testing.assert_array_equal(table["ngenes"].to_numpy(), (x > 0).sum(1))
    # scanpy sums float32 counts in float32: agreement to float32 precision.
    np.testing.assert_allclose(table["pct_counts_mt"], 100 * x[:, MT].sum(1) / x.sum(1), rtol=1e-6)
    assert list(table.columns) == [
        "UMI_count",
        "ngenes",
        "pct_counts_mt",
        "pct_counts_ribo",
        "pct_counts_hb",
    ]


def test_generated_cell_names_are_label_and_position():
    names = generated_cell_names(np.array(["A", "B", "A", "A_1", "A"]))
    assert names == ["A_0", "B_0", "A_1", "A_1_0", "A_2"]


def test_same_seed_gives_identical_tables_without_scrublet():
    labels = labels_of(20)
    x = np.stack([cell(umi=900 + i, mt=20 + i) for i in range(len(labels))])
    first = qc_metrics.generated_qc(x, labels, GENES, seed=3, doublets=False)
    second = qc_metrics.generated_qc(sp.csr_matrix(x), labels, GENES, seed=3, doublets=False)
    pd.testing.assert_frame_equal(first.table, second.table)
    assert first.unavailable == second.unavailable


def scrublet_counts(n_cells: int, n_genes: int, seed: int) -> np.ndarray:
    """Negative binomial counts from three cell types (enough genes for Scrublet's 30 PCs)."""
    rng = np.random.default_rng(seed)
    profiles = rng.gamma(0.5, 2.0, size=(3, n_genes))
    mean = profiles[rng.integers(0, 3, n_cells)] * rng.uniform(0.5, 2.0, size=(n_cells, 1))
    return rng.negative_binomial(2, 2 / (2 + mean)).astype(np.float32)


def scrublet_genes(n_genes: int) -> list[str]:
    return ["MT-CO1", "RPL3", "HBB"] + [f"GENE{j}" for j in range(n_genes - 3)]


def test_scrublet_per_chunk_is_deterministic_in_the_seed():
    # 2 chunks of 200 cells: each runs its own Scrublet, seeded from (seed, chunk).
    labels = labels_of(200, names=("A", "B"))
    x = sp.csr_matrix(scrublet_counts(400, 200, 1))
    first = qc_metrics.generated_qc(x, labels, scrublet_genes(200), seed=5, n_chunks=2)
    second = qc_metrics.generated_qc(x, labels, scrublet_genes(200), seed=5, n_chunks=2)
    assert first.unavailable == {}
    assert first.table["predicted_doublet"].dtype == bool
    pd.testing.assert_frame_equal(first.table, second.table)
    real = REAL.iloc[:, :2].assign(predicted_doublet=np.arange(len(REAL)) == 0)
    thresholds = fit_thresholds(QCMetrics(real, {}, "obs"))  # a real doublet call: used
    rates = qc_rate.qc_pass_rates(first, labels, thresholds)
    assert rates["criteria"] == ["qc_UMI_count", "qc_ngenes", "qc_predicted_doublet"]
    without = fit_thresholds(QCMetrics(REAL.iloc[:, :2], {}, "obs"))  # none: not used
    assert qc_rate.qc_pass_rates(first, labels, without)["criteria"] == [
        "qc_UMI_count",
        "qc_ngenes",
    ]


def test_generated_cells_are_called_doublets_by_the_real_data_threshold():
    """Scrublet run on a generated chunk fits a threshold to whatever cells it gets; the real
    data's score threshold judges generated cells as it judged the real ones."""
    labels = labels_of(200, names=("A", "B"))
    x = sp.csr_matrix(scrublet_counts(400, 200, 1))
    real = REAL.iloc[:, :2].assign(predicted_doublet=np.arange(len(REAL)) == 0)
    fitted = fit_thresholds(QCMetrics(real, {}, "computed", doublet_threshold=1.0))
    _, strict = qc_rate.score_generated_cells(
        x, labels, scrublet_genes(200), fitted, seed=5, n_chunks=2
    )
    assert strict["fail_share"]["t3"]["qc_predicted_doublet"] == 0.0
    lenient = dataclasses.replace(fitted, doublet_score=-1.0)
    _, rates = qc_rate.score_generated_cells(
        x, labels, scrublet_genes(200), lenient, seed=5, n_chunks=2
    )
    assert rates["fail_share"]["t3"]["qc_predicted_doublet"] == 1.0


def test_doublet_call_missing_in_one_chunk_is_dropped_for_all_cells():
    # Chunk 0 gets 99 + 1 = 100 cells (Scrublet runs), chunk 1 gets 99 (too few for Scrublet).
    labels = np.array(["A"] * 198 + ["B"])
    x = scrublet_counts(199, 200, 2)
    metrics = qc_metrics.generated_qc(x, labels, scrublet_genes(200), seed=0, n_chunks=2)
    assert "predicted_doublet" not in metrics.table.columns
    reason = metrics.unavailable["predicted_doublet"]
    assert "got 99" in reason
    assert "chunk 1; 1 of 2 chunks" in reason


def test_pattern_without_genes_is_unavailable_once_without_a_chunk_number():
    genes = ["MT-CO1", "RPL3"] + [f"G{j}" for j in range(4)]
    labels = labels_of(4)
    x = np.ones((len(labels), len(genes)), dtype=np.float32)
    metrics = qc_metrics.generated_qc(x, labels, genes, seed=0, n_chunks=4, doublets=False)
    assert metrics.unavailable["pct_counts_hb"] == "no gene matches ^HB[^(P)]"
    assert "pct_counts_hb" not in metrics.table.columns


@pytest.mark.parametrize(
    ("counts", "labels", "match"),
    [
        (np.zeros((0, 12)), np.array([], dtype=str), "no generated cells"),
        (np.ones((4, 12)), np.array(["A"] * 3), "4 generated cells but 3 labels"),
        (np.ones((4, 11)), np.array(["A"] * 4), "11 genes but 12 gene names"),
        (np.ones((2, 4, 12)), np.array(["A"] * 2), "2-D"),
    ],
)
def test_shape_errors(counts, labels, match):
    with pytest.raises(DataError, match=match):
        qc_metrics.generated_qc(counts, labels, GENES, seed=0, doublets=False)


@pytest.mark.parametrize(
    ("value", "problem"), [(-1.0, "negative"), (np.nan, "NaN"), (np.inf, "NaN")]
)
def test_bad_count_values_name_the_cell(value, problem):
    x = np.stack([cell() for _ in range(4)])
    x[2, 6] = value
    labels = np.array(["A", "B", "C", "D"])
    with pytest.raises(DataError, match=f"{problem}.*cell 2, label 'C'"):
        qc_metrics.generated_qc(sp.csr_matrix(x), labels, GENES, seed=0, doublets=False)


def test_pass_rates_reject_mismatched_labels_and_empty_tables():
    with pytest.raises(DataError, match="labels of shape"):
        qc_rate.qc_pass_rates(REAL, np.array(["A"] * 4), real_thresholds())
    with pytest.raises(DataError, match="no generated cells"):
        qc_rate.qc_pass_rates(REAL.iloc[:0], np.array([], dtype=str), real_thresholds())


def test_a_criterion_missing_in_every_chunk_is_logged_once(caplog):
    """Ten chunks too small for Scrublet: one warning for the generated set, not one per chunk."""
    labels = labels_of(40)
    x = np.stack([cell() for _ in labels])
    metrics = qc_metrics.generated_qc(x, labels, GENES, seed=0, doublets=True)
    assert "predicted_doublet" in metrics.unavailable
    messages = [r.getMessage() for r in caplog.records if "predicted_doublet" in r.getMessage()]
    assert len(messages) == 1, messages
