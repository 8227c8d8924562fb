"""Property: on any small AnnData the data pipeline and the first training steps either give
finite numbers or raise one of our documented errors (DataError, RunError), never another
exception. Examples are derandomised, so every run (and CI) tries the same ones.
"""

import itertools

import anndata as ad
import jax
import numpy as np
import pandas as pd
import scipy.sparse as sp
from hypothesis import HealthCheck, assume, event, given, settings
from hypothesis import strategies as st

from cradle_jax.config import data_config
from cradle_jax.data.batches import iterate_batches
from cradle_jax.data.dataset import PerturbData, load_perturb_data
from cradle_jax.data.errors import DataError
from cradle_jax.train.errors import RunError
from cradle_jax.train.inputs import batch_arrays, sized_model_config, split_stats
from cradle_jax.train.keys import purpose_key
from cradle_jax.train.objective import init_params, placeholder_inputs
from cradle_jax.train.state import TrainState
from cradle_jax.train.step import make_train_step
from tests.settings import original_loss, plain_optimizer

CONTROL = "non-targeting"
SINGLES = ("A", "B", "C", "D")
# MT-/RP[SL]/HB genes switch the percentage QC metrics on; HBP1 must not count as haemoglobin.
SPECIAL_GENES = ("MT-CO1", "MT-ND1", "RPL3", "RPS6", "HBB", "HBA1", "HBP1")
TINY_MODEL = {
    "n_latent": 2,
    "n_particles": 1,
    "decoder_n_hidden": 8,
    "basal_encoder_n_hidden": 8,
    "embedding_encoder_n_hidden": 8,
    "embedding_encoder_n_layers": 1,
}
BATCH = 16
DOCUMENTED = (DataError, RunError)


@st.composite
def small_anndata(draw) -> tuple[ad.AnnData, str]:
    """1-60 cells x 1-30 genes, labels from control, 1-4 singles and their pairs (control as
    a member too), Poisson counts with extra zeros, QC metrics in obs or not; and a split."""
    n_cells, n_genes = draw(st.integers(1, 60)), draw(st.integers(1, 30))
    special = draw(st.lists(st.sampled_from(SPECIAL_GENES), unique=True, max_size=min(n_genes, 4)))
    genes = [*special, *(f"G{i}" for i in range(n_genes - len(special)))]
    singles = SINGLES[: draw(st.integers(1, len(SINGLES)))]
    pairs = ["+".join(pair) for pair in itertools.combinations(singles, 2)]
    vocabulary = [CONTROL, *singles, *pairs, f"{singles[0]}+{CONTROL}"]
    labels = draw(st.lists(st.sampled_from(vocabulary), min_size=n_cells, max_size=n_cells))
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    rate = draw(st.sampled_from([0.3, 3.0, 30.0]))
    dropout = draw(st.sampled_from([0.0, 0.5, 0.95, 1.0]))  # 1.0: not a single count
    counts = rng.poisson(rate, (n_cells, n_genes)) * (rng.random((n_cells, n_genes)) >= dropout)
    obs = pd.DataFrame({"perturbation": labels}, index=[f"c{i}" for i in range(n_cells)])
    if draw(st.booleans()):  # QC metrics shipped in obs, as some files do
        obs["UMI_count"] = counts.sum(1).astype(float)
        obs["ngenes"] = (counts > 0).sum(1).astype(float)
        for metric in ("pct_counts_mt", "pct_counts_ribo", "pct_counts_hb"):
            obs[metric] = rng.uniform(0, 50, n_cells)
        obs["predicted_doublet"] = rng.random(n_cells) < 0.1
    adata = ad.AnnData(
        X=sp.csr_matrix(counts.astype(np.float32)), obs=obs, var=pd.DataFrame(index=genes)
    )
    return adata, draw(st.sampled_from(["random", "combinations"]))


def load(adata: ad.AnnData, split: str) -> PerturbData | None:
    """The dataset, or None after a documented error (whose message is one line)."""
    config = data_config()
    config.qc_doublets = False
    config.split = split
    try:
        data = load_perturb_data(adata, config, seed=0)
    except DOCUMENTED as err:
        message = str(err)
    else:
        event("loaded")
        return data
    event(f"refused: {message.split(':')[0][:40]}")  # --hypothesis-show-statistics lists them
    assert "\n" not in message, message
    return None


def assert_finite_inputs(data: PerturbData) -> list[dict]:
    """Every number the model will see is finite; the first batches of train and val."""
    assert np.isfinite(data.library_size).all()
    assert np.isfinite(data.normalization.mean).all()
    assert np.isfinite(data.normalization.std).all()
    assert np.isfinite(data.qc).all()
    assert data.summary()["cells"] == data.n_cells
    batches = []
    for split in ("train", "val"):
        batch = batch_arrays(next(iterate_batches(data, split, BATCH, seed=0)))
        for name, values in batch.items():
            assert np.isfinite(values).all(), (split, name)
        batches.append(batch)
    return batches


def two_training_steps(data: PerturbData, batch: dict) -> None:
    """Two steps of a tiny CRADLE model on one batch: loss, every term and parameters finite."""
    cfg = sized_model_config(data, **TINY_MODEL)
    key = jax.random.wrap_key_data(purpose_key(0, "init"))
    params = jax.jit(init_params, static_argnames="cfg")(key, *placeholder_inputs(cfg), cfg)
    optimizer = plain_optimizer(1e-3)
    state = TrainState.create(params, optimizer)
    step = make_train_step(cfg, original_loss(alpha="split"), optimizer)
    stats = split_stats(data, "train")
    for _ in range(2):
        state, loss, aux = step(state, batch, stats, purpose_key(0, "train"))
        assert np.isfinite(float(loss)), aux
        assert all(np.isfinite(float(v)) for v in aux.values()), aux
    assert all(np.isfinite(leaf).all() for leaf in jax.tree.leaves(state.params))


PROPERTY = settings(
    deadline=None, derandomize=True, database=None, suppress_health_check=[HealthCheck.too_slow]
)


@settings(PROPERTY, max_examples=60)
@given(small_anndata())
def test_data_pipeline_gives_finite_inputs_or_a_documented_error(case):
    data = load(*case)
    if data is not None:
        assert_finite_inputs(data)


@settings(PROPERTY, max_examples=4)
@given(small_anndata())
def test_first_training_steps_are_finite_or_a_documented_error(case):
    """Four datasets that load (each new shape costs a compilation, cached on disk)."""
    data = load(*case)
    assume(data is not None)
    two_training_steps(data, assert_finite_inputs(data)[0])
