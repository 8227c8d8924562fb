"""Counterfactuals of real controls vs prior samples on a run's held-out perturbations.

    python experiments/scripts/counterfactual_vs_prior.py --workdir runs/demo/train

Prints, per held-out perturbation (combinations of the test split by default) and source, the
scores of `cradle_jax.evaluate.scores.held_out.counterfactual_vs_prior`, then their means per
source.
"""

from absl import app, flags

from cradle_jax.data.dataset import load_perturb_data, read_h5ad
from cradle_jax.evaluate.scores.held_out import counterfactual_vs_prior
from cradle_jax.train.bundle import load_workdir

WORKDIR = flags.DEFINE_string("workdir", None, "a trained run", required=True)
SPLIT = flags.DEFINE_string("split", "test", "the split whose perturbations are scored")
SINGLES = flags.DEFINE_bool("singles", False, "score single perturbations too")
COLUMNS = ["ATE_pearsonr", "ATE_r2", "ATE_pearsonr_top20", "jaccard_sim_top20", "mean_rmse"]


def main(argv: list[str]) -> None:
    del argv
    bundle = load_workdir(WORKDIR.value)
    config = bundle.config
    adata = read_h5ad(config.data.path)
    data = load_perturb_data(adata, config.data, config.seed)
    table = counterfactual_vs_prior(
        bundle, adata, data, seed=config.seed, split=SPLIT.value,
        combinations_only=not SINGLES.value,
    )  # fmt: skip
    print(table.to_string(index=False, float_format="%.4f"))
    print()
    print(table.groupby("source")[COLUMNS].mean().to_string(float_format="%.4f"))


if __name__ == "__main__":
    app.run(main)
