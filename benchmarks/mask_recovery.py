r"""Does a short CRADLE training run recover the simulator's planted perturbation masks?

For each seed: simulate, train with the jit train step (no trainer around it), and score the
learned mask probabilities σ(φ) (T, L) against the planted masks with
cradle_jax.evaluate.scores.masks:
Hungarian-matched F1 of σ(φ) > 0.5 and AUROC of σ(φ), each against a permutation null (the same
learned rows reassigned to the singles at random). A seed beats chance when both scores lie
above their null's 95th percentile. tests/models/test_mask_recovery.py runs the defaults, seed 0.

Masks can only be recovered where the latent basis is identified; the defaults are chosen so:
  * sum mode, z = z_b + dᵀ(M⊙E) with z_b ~ N(0, I). The likelihood is invariant under rotations
    of the latent space, and a rotation smears a sparse M⊙E over every dim. Two things fix the
    rotation: the mean-field basal posterior (the simulator's loadings have nearly disjoint gene
    supports, so the planted basis is where the true posterior is closest to diagonal) and the
    sparse mask prior. In concat mode z_p reaches the decoder through its own weights, so any
    invertible map of it is free and only the mask prior pins it.
  * one latent dim per single, twice as many singles as dims: singles sharing a dim shift cells
    along the same axis, so the planted basis is the unique sparsest one. With 1–3 dims per
    single (the simulator's default) a rotation can trade nonzeros between singles at no cost.
  * the model's L equals the simulator's; 250 genes, so each dim moves ~19 genes (with 150,
    ~9, and the weakest dims barely show in the counts).
  * loss.alpha "off": with "split" the reconstruction of pass cells is weighted α (the fail
    share) while their z_b KL keeps weight 1, a β-VAE with β = 1/α that collapses the basal
    posterior and with it the latent geometry the masks are read in.
  * mask logits start at -2 (σ = 0.12) under a prior of 0.1, both near the planted density 1/L.
    From logits 0 the ranking is learned (AUROC) but the masks are still dense after 900 steps.

One shuffled epoch of batches is built once and cycled: building a batch on the host (the
reference medians) costs about as much as a training step at this size.

    python benchmarks/mask_recovery.py --seeds 0 1 2 3 4 5
    python benchmarks/mask_recovery.py --seeds 0 1 2 --concat --alpha split --max_mask_dims 3 \
        --n_perturbations 8 --n_genes 150 --mask_init 0 --mask_prior 0.01 --batch_size 256 \
        --steps 1000   # the first setting tried
"""

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np

from cradle_jax.config import data_config, train_config
from cradle_jax.data.batches import iterate_batches
from cradle_jax.data.dataset import load_perturb_data
from cradle_jax.data.simulate import SimulationConfig, simulate
from cradle_jax.evaluate.scores.masks import MaskRecovery, mask_recovery, planted_rows
from cradle_jax.train import objective
from cradle_jax.train.inputs import batch_arrays, sized_model_config, split_stats
from cradle_jax.train.state import TrainState
from cradle_jax.train.step import make_optimizer, make_train_step


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--steps", type=int, default=900, help="training steps per seed")
    parser.add_argument("--batch_size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=1e-2)
    # simulation
    parser.add_argument("--n_cells", type=int, default=4000)
    parser.add_argument("--n_genes", type=int, default=250)
    parser.add_argument("--n_perturbations", type=int, default=12)
    parser.add_argument("--n_latent", type=int, default=6, help="simulator's and model's L")
    parser.add_argument("--max_mask_dims", type=int, default=1)
    parser.add_argument("--effect_size", type=float, default=2.0)
    # model and loss
    parser.add_argument("--model_latent", type=int, default=0, help="model's L; 0: --n_latent")
    parser.add_argument(
        "--concat", action="store_true", help="concat decoder input (the default mode) not sum"
    )
    parser.add_argument("--mask_prior", type=float, default=0.1)
    parser.add_argument("--mask_init", type=float, default=-2.0, help="initial mask logits")
    parser.add_argument("--n_particles", type=int, default=2)
    parser.add_argument("--hidden", type=int, default=64, help="decoder and basal encoder width")
    parser.add_argument("--embedding_hidden", type=int, default=32)
    parser.add_argument("--alpha", default="off", help="loss.alpha: batch, split, off, float")
    parser.add_argument("--beta", type=float, default=0.1)
    parser.add_argument(
        "--cf_kl",
        default="reference",
        choices=objective.CF_KL_FORMS,
        help="loss.cf_kl; none also skips drawing the references it alone reads",
    )
    parser.add_argument("--n_null", type=int, default=200)
    return parser.parse_args()


def run_seed(args: argparse.Namespace, seed: int) -> tuple[np.ndarray, MaskRecovery, float]:
    """Simulate and train with `seed`; the losses, the mask scores, the training seconds."""
    sim = simulate(
        SimulationConfig(
            n_cells=args.n_cells,
            n_genes=args.n_genes,
            n_perturbations=args.n_perturbations,
            n_pairs=0,
            n_latent=args.n_latent,
            max_mask_dims=args.max_mask_dims,
            effect_size=args.effect_size,
            seed=seed,
        )
    )
    config = data_config()
    config.qc_doublets = False
    if args.cf_kl == "none":
        config.references = "none"
    data = load_perturb_data(sim.adata, config, seed=seed)
    cfg = sized_model_config(
        data,
        n_latent=args.model_latent or args.n_latent,
        n_particles=args.n_particles,
        sum_mode=not args.concat,
        decoder_n_hidden=args.hidden,
        basal_encoder_n_hidden=args.hidden,
        embedding_encoder_n_hidden=args.embedding_hidden,
        embedding_encoder_n_layers=2,
        mask_prior_prob=args.mask_prior,
        mask_init_logits=args.mask_init,
    )
    alpha = args.alpha if args.alpha in objective.ALPHA_MODES else float(args.alpha)
    loss_cfg = objective.LossConfig(
        alpha, args.cf_kl, args.beta, "reconstruction", independence=0.0,
        independence_groups="perturbation",
    )  # fmt: skip
    stats = {k: jnp.asarray(v) for k, v in split_stats(data, "train").items()}
    batches = [
        {k: jnp.asarray(v) for k, v in batch_arrays(batch).items()}
        for batch in iterate_batches(data, "train", args.batch_size, seed=seed)
    ]
    params = jax.jit(objective.init_params, static_argnames="cfg")(
        jax.random.key(seed), batches[0], stats, cfg
    )
    defaults = train_config()  # a training run's, but without the masks' larger steps
    optimizer = make_optimizer(
        args.lr,
        weight_decay=defaults.weight_decay,
        clip_norm=defaults.clip_norm,
        mask_lr_scale=1.0,
        dispersion_lr_scale=defaults.dispersion_lr_scale,
    )
    state = TrainState.create(params, optimizer)
    step = make_train_step(cfg, loss_cfg, optimizer)
    run_key = jax.random.key_data(jax.random.key(seed + 1))

    losses, start = [], time.perf_counter()
    for i in range(args.steps):
        state, loss, _ = step(state, batches[i % len(batches)], stats, run_key)
        losses.append(float(loss))
    seconds = time.perf_counter() - start

    planted = planted_rows(sim.truth, data.vocabulary.singles)
    probs = np.asarray(jax.nn.sigmoid(state.params["mask_logits"]))
    return np.array(losses), mask_recovery(probs, planted, args.n_null, seed), seconds


def main() -> None:
    args = parse_args()
    print(
        f"{args.steps} steps, lr {args.lr}, {'concat' if args.concat else 'sum'} mode, "
        f"mask prior {args.mask_prior}; simulated {args.n_cells} cells, {args.n_genes} genes, "
        f"{args.n_perturbations} singles over L = {args.n_latent} "
        f"(1 to {args.max_mask_dims} dims each, effect size {args.effect_size})"
    )
    print(
        "seed | loss first -> last (mean of 10) | F1 (null mean, 95th) | "
        "AUROC (null mean, 95th) | beats chance"
    )
    wins = 0
    for seed in args.seeds:
        losses, r, seconds = run_seed(args, seed)
        wins += r.beats_chance
        print(
            f"{seed:4d} | {losses[:10].mean():9.2f} -> {losses[-10:].mean():9.2f} "
            f"({seconds:.0f} s) | {r.f1:.3f} ({r.null_f1.mean():.3f}, {r.f1_null_95:.3f}) | "
            f"{r.auroc:.3f} ({r.null_auroc.mean():.3f}, {r.auroc_null_95:.3f}) | "
            f"{'yes' if r.beats_chance else 'no'}",
            flush=True,
        )
    print(
        "beats chance (F1 and AUROC above the null 95th percentile) in "
        f"{wins} of {len(args.seeds)} seeds"
    )


if __name__ == "__main__":
    main()
