"""Does a short CRADLE training run recover the simulator's planted perturbation masks?

Trains with a plain jit + optax loop (until the trainer lands) on simulated data and compares
the learned mask probabilities σ(φ) (T, L) with the planted masks. Latent dimensions are only
identified up to permutation, so columns are matched (Hungarian) before scoring:
  F1 of σ(φ) > 0.5, against random masks of the same density (the chance level);
  AUROC of σ(φ) for planted entries, against the same probabilities with rows and columns
  shuffled. Both report the null's mean and 95th percentile.

    python benchmarks/mask_recovery.py --lr 1e-2 --epochs 100 --mask_prior 0.01 --seed 0
"""

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np
from scipy.optimize import linear_sum_assignment
from sklearn.metrics import roc_auc_score

from cradle_jax.data.batches import iterate_batches
from cradle_jax.data.config import data_config
from cradle_jax.data.dataset import load_perturb_data
from cradle_jax.data.simulate import SimulationConfig, simulate
from cradle_jax.train import objective
from cradle_jax.train.inputs import batch_arrays, cradle_config, split_stats
from cradle_jax.train.step import make_optimizer, make_train_step


def matched_f1(predicted: np.ndarray, planted: np.ndarray) -> float:
    overlap = planted.T.astype(int) @ predicted.astype(int)
    rows, cols = linear_sum_assignment(-overlap)
    return 2 * overlap[rows, cols].sum() / (planted.sum() + predicted.sum())


def matched_auroc(probs: np.ndarray, planted: np.ndarray) -> float:
    rows, cols = linear_sum_assignment(-(planted.T.astype(float) @ probs))
    return roc_auc_score(planted[:, rows].ravel(), probs[:, cols].ravel())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lr", type=float, default=1e-2)
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--mask_prior", type=float, default=0.01)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    sim = simulate(
        SimulationConfig(
            n_cells=4000, n_genes=150, n_perturbations=8, n_pairs=0, n_latent=6, seed=args.seed
        )
    )
    config = data_config()
    config.qc_doublets = False
    data = load_perturb_data(sim.adata, config, seed=args.seed)
    cfg = cradle_config(
        data,
        n_latent=6,
        n_particles=2,
        decoder_n_hidden=64,
        basal_encoder_n_hidden=64,
        embedding_encoder_n_hidden=32,
        embedding_encoder_n_layers=2,
        mask_prior_prob=args.mask_prior,
    )
    loss_cfg = objective.LossConfig(alpha="split", cf_kl="reference", beta=0.1)
    stats = {k: jnp.asarray(v) for k, v in split_stats(data, "train").items()}
    first = batch_arrays(next(iterate_batches(data, "train", 256, seed=args.seed)))
    params = jax.jit(objective.init_params, static_argnames="cfg")(
        jax.random.key(args.seed), first, stats, cfg
    )
    optimizer = make_optimizer(args.lr)
    opt_state = optimizer.init(params)

    step = make_train_step(cfg, loss_cfg, optimizer)

    losses, start = [], time.perf_counter()
    for epoch in range(args.epochs):
        for batch in iterate_batches(data, "train", 256, seed=args.seed, epoch=epoch):
            key = jax.random.fold_in(jax.random.key(args.seed + 1), len(losses))
            params, opt_state, loss, _ = step(params, opt_state, batch_arrays(batch), stats, key)
            losses.append(float(loss))
    print(
        f"{len(losses)} steps in {time.perf_counter() - start:.1f} s; loss (mean of 10) "
        f"first {np.mean(losses[:10]):.2f}, last {np.mean(losses[-10:]):.2f}"
    )

    order = [list(sim.truth["singles"]).index(s) for s in data.vocabulary.singles]
    planted = sim.truth["mask"].astype(bool)[order]
    probs = np.asarray(jax.nn.sigmoid(params["mask_logits"]))
    predicted = probs > 0.5
    rng = np.random.default_rng(args.seed)
    null_f1 = [matched_f1(rng.random(probs.shape) < predicted.mean(), planted) for _ in range(200)]
    null_auc = [
        matched_auroc(
            probs[rng.permutation(probs.shape[0])][:, rng.permutation(probs.shape[1])], planted
        )
        for _ in range(200)
    ]
    print(f"mask density learned {predicted.mean():.3f}, planted {planted.mean():.3f}")
    print(
        f"matched F1 {matched_f1(predicted, planted):.3f}; chance mean {np.mean(null_f1):.3f}, "
        f"95th pct {np.percentile(null_f1, 95):.3f}"
    )
    print(
        f"matched AUROC {matched_auroc(probs, planted):.3f}; shuffled mean "
        f"{np.mean(null_auc):.3f}, 95th pct {np.percentile(null_auc, 95):.3f}"
    )


if __name__ == "__main__":
    main()
