"""Plots: each writes a complete PNG atomically, deterministically, and survives edge cases."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cradle_jax.data.qc import QCMetrics, fit_thresholds
from cradle_jax.evaluate.report import canvas, embedding, plots

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
CONTROL = "non-targeting"


def assert_png(path: Path, expected: Path) -> None:
    """A real PNG of plausible size at `expected`, and nothing else in its directory."""
    assert path == expected
    data = path.read_bytes()
    assert data.startswith(PNG_SIGNATURE)
    assert len(data) > 5_000
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]  # no temporary left
    assert path.stat().st_mode & 0o777 == 0o644  # not mkstemp's private 0600


def qc_table(n: int, seed: int, mt_shift: float = 0.0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "UMI_count": rng.lognormal(8.0, 0.4, n),
            "ngenes": rng.normal(2500.0, 300.0, n),
            "pct_counts_mt": rng.gamma(2.0, 2.0, n) + mt_shift,
            "pct_counts_ribo": rng.normal(25.0, 3.0, n),
            "pct_counts_hb": np.zeros(n),  # zero variance: no KDE possible
            "predicted_doublet": rng.random(n) < 0.05,
        }
    )


@pytest.fixture(scope="module")
def thresholds():
    real = qc_table(300, seed=0)
    return fit_thresholds(QCMetrics(table=real, unavailable={}, source="obs"))


def test_qc_violins_png_and_deterministic(tmp_path, thresholds):
    real, generated = qc_table(300, seed=0, mt_shift=3.0), qc_table(200, seed=1)
    rates = {"real": 0.81, "generated": 0.97}
    first, second = tmp_path / "a", tmp_path / "b"
    first.mkdir()
    second.mkdir()
    out = plots.qc_violins(
        real, generated, thresholds, 3, "KLF1", first / "qc.png", pass_rates=rates
    )
    assert_png(out, first / "qc.png")
    again = plots.qc_violins(
        real, generated, thresholds, 3, "KLF1", second / "qc.png", pass_rates=rates
    )
    assert again.read_bytes() == out.read_bytes()


def test_qc_violins_constant_and_single_cell(tmp_path, thresholds):
    """A single generated cell and constant metrics take the strip-plot path without error."""
    generated = qc_table(1, seed=2).drop(columns="pct_counts_ribo")  # a metric missing too
    out = plots.qc_violins(
        qc_table(50, seed=3), generated, thresholds, 5, "A+B", tmp_path / "q.png"
    )
    assert_png(out, tmp_path / "q.png")


def test_qc_violins_without_shared_metric_raises(tmp_path, thresholds):
    with pytest.raises(ValueError, match="no continuous QC metric"):
        plots.qc_violins(
            qc_table(5, 0)[["UMI_count"]],
            qc_table(5, 1)[["ngenes"]],
            thresholds,
            3,
            "A",
            tmp_path / "q.png",
        )
    assert list(tmp_path.iterdir()) == []


def latents(n: int, dim: int, n_perturbations: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    names = np.array([CONTROL] + [f"P{i}" for i in range(n_perturbations)])
    return rng.normal(size=(n, dim)), rng.random(n) < 0.2, names[rng.integers(len(names), size=n)]


def test_latent_embedding_tiny_takes_pca(tmp_path):
    z, fail, labels = latents(10, 6, 3)
    out = embedding.latent_embedding(z, fail, labels, tmp_path / "z.png", seed=0, control=CONTROL)
    assert_png(out, tmp_path / "z.png")
    assert embedding._embed(z.astype(np.float32), seed=0)[1] == "PC"


@pytest.mark.filterwarnings("error")
def test_pca_fallback_degenerate_shapes():
    assert embedding._pca_2d(np.ones((1, 5), np.float32)).shape == (1, 2)
    assert embedding._pca_2d(np.arange(4.0)[:, None]).shape == (4, 2)
    assert (embedding._pca_2d(np.ones((6, 3), np.float32)) == 0).all()  # identical cells


def test_pca_fallback_is_an_svd_with_each_largest_loading_positive():
    z = latents(40, 6, 3)[0]
    centred = z - z.mean(axis=0)
    axes = np.linalg.svd(centred, full_matrices=False)[2][:2]
    axes *= np.sign(axes[[0, 1], np.abs(axes).argmax(axis=1)])[:, None]
    np.testing.assert_allclose(embedding._pca_2d(z), centred @ axes.T, rtol=0, atol=1e-12)


@pytest.mark.slow  # importing umap and its first call compile numba code: ~25 s on 2 cores
def test_latent_embedding_umap_subsampled_and_deterministic(tmp_path):
    """The UMAP path of the file: importing umap compiles numba code (~12 s on 2 cores), so it
    is taken once; the second call, with the code compiled, costs about a second."""
    z, fail, labels = latents(260, 8, 25)  # > MAX_COLOURED perturbations: an "other" group
    first, second = tmp_path / "a", tmp_path / "b"
    first.mkdir()
    second.mkdir()
    out = embedding.latent_embedding(
        z, fail, labels, first / "u.png", seed=0, max_cells=200, control=CONTROL
    )
    assert_png(out, first / "u.png")
    again = embedding.latent_embedding(
        z, fail, labels, second / "u.png", seed=0, max_cells=200, control=CONTROL
    )
    assert again.read_bytes() == out.read_bytes()


def test_latent_embedding_two_dims_plotted_directly(tmp_path):
    z, fail, labels = latents(40, 2, 2)
    assert embedding._embed(z.astype(np.float32), seed=0)[1] == "z"
    assert_png(
        embedding.latent_embedding(z, fail, labels, tmp_path / "d.png", seed=1, control=CONTROL),
        tmp_path / "d.png",
    )


def test_ate_scatter(tmp_path):
    rng = np.random.default_rng(0)
    data = rng.normal(0.0, 0.5, size=(12, 80))
    model = 0.8 * data + rng.normal(0.0, 0.2, size=data.shape)
    labels = np.array([f"P{i}" for i in range(12)])
    out = plots.ate_scatter(data, model, labels, tmp_path / "ate.png", highlight=["P0", "P3"])
    assert_png(out, tmp_path / "ate.png")
    with pytest.raises(ValueError, match="NOPE"):
        plots.ate_scatter(data, model, labels, tmp_path / "x.png", highlight=["NOPE"])
    with pytest.raises(ValueError, match="need data_ate"):
        plots.ate_scatter(data, model[:, :3], labels, tmp_path / "x.png")
    assert_png(out, tmp_path / "ate.png")  # the failed calls left nothing


def test_failed_write_raises_and_leaves_nothing(tmp_path, thresholds):
    table = qc_table(30, seed=0)
    missing = tmp_path / "missing" / "qc.png"
    with pytest.raises(FileNotFoundError):
        plots.qc_violins(table, table, thresholds, 3, "A", missing)
    rng = np.random.default_rng(0)
    with pytest.raises(FileNotFoundError):
        plots.ate_scatter(rng.normal(size=(2, 5)), rng.normal(size=(2, 5)), ["A", "B"], missing)
    assert list(tmp_path.iterdir()) == []


def test_failed_savefig_removes_temporary(tmp_path, monkeypatch):
    """An error while encoding (not only a missing directory) also leaves no temporary file."""

    def broken(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(canvas.Figure, "savefig", broken)
    rng = np.random.default_rng(0)
    with pytest.raises(RuntimeError, match="disk full"):
        plots.ate_scatter(
            rng.normal(size=(2, 5)), rng.normal(size=(2, 5)), ["A", "B"], tmp_path / "a.png"
        )
    assert list(tmp_path.iterdir()) == []
