"""Train-step benchmark at the published configs: cells/s, GFLOP/s, roofline ratio, compile time.

One jit-compiled step (`cradle_jax.train.step.make_train_step`, the code `cradle-jax train` runs)
on a fixed synthetic batch on one device. The reference measured in the same run is the device's
fp32 matmul throughput (a 2048³ `jnp.dot`), the roofline the step is compared with; it is timed
between the steps (one product after each step), so both see the same machine state, and the
ratio is of the two medians. FLOPs come from XLA's cost analysis of the compiled step and from
the analytic count of `cradle_jax.train.flops` (matrix products only).

    python benchmarks/bench_train_step.py --config adamson --steps 30
    python benchmarks/bench_train_step.py --config norman --compute_dtype bfloat16
"""

import argparse
import resource
import time

import jax
import jax.numpy as jnp
import numpy as np

from cradle_jax.config import default_config
from cradle_jax.models.config import COMPUTE_DTYPES, ModelConfig, default_model_config
from cradle_jax.train.config import resolve_loss_config
from cradle_jax.train.flops import cradle_step_flops
from cradle_jax.train.objective import init_params
from cradle_jax.train.state import TrainState
from cradle_jax.train.step import make_optimizer, make_train_step
from cradle_jax.xla_flags import tune_cpu_backend

CONFIGS = {
    # Sizes modelled on the Adamson and Norman configs (docs/method.md#published-hyperparameters):
    # G simulated genes, T perturbations, L latent, widths, batch, particles.
    "adamson": dict(G=2000, T=80, L=100, basal=200, decoder=400, embedding=400, batch=512),
    "norman": dict(G=5000, T=105, L=200, basal=400, decoder=400, embedding=400, batch=512),
}
MATMUL_SIZE = 2048


def synthetic_batch(G: int, T: int, B: int, seed: int = 0) -> tuple[dict, dict]:
    """Poisson counts around heavy-tailed gene means, one single perturbation per cell (10%
    controls), 10% QC fails; normalisation statistics from 20·B cells of the same genes."""
    rng = np.random.default_rng(seed)
    gene_means = rng.gamma(0.3, 3.0, G)
    X = rng.poisson(gene_means, size=(B, G)).astype(np.float32)
    D = np.zeros((B, T), np.float32)
    treated = rng.random(B) > 0.1
    D[np.flatnonzero(treated), rng.integers(0, T, treated.sum())] = 1
    qc = (rng.random((B, 1)) < 0.1).astype(np.float32)
    reference_X = rng.poisson(gene_means, size=(B, G)).astype(np.float32)
    batch = dict(
        X=X,
        D=D,
        qc=qc,
        reference_X=reference_X,
        library_size=X.sum(1),
        weight=np.ones(B, np.float32),
    )
    log_x = np.log1p(rng.poisson(gene_means, size=(20 * B, G))).astype(np.float32)
    stats = dict(
        obs_dosage=np.maximum(D.sum(0) * 100, 1).astype(np.float32),
        obs_qc=np.array([qc.sum() * 100], np.float32),
        norm_mean=log_x.mean(0),
        norm_std=log_x.std(0, ddof=1),
        fail_fraction=np.float32(qc.mean()),
    )
    return batch, stats


def matmul_reference(n: int = MATMUL_SIZE):
    """A compiled n×n fp32 product and its FLOP count; call `run()` to time one product."""
    a = jax.random.normal(jax.random.key(0), (n, n), jnp.float32)
    dot = jax.jit(jnp.dot)
    dot(a, a).block_until_ready()
    return (lambda: dot(a, a).block_until_ready()), 2 * n**3


def matmul_gflops(n: int = MATMUL_SIZE, repeats: int = 10) -> float:
    """Median fp32 matmul throughput over `repeats` products (the roofline of other scripts)."""
    run, flops = matmul_reference(n)
    return flops / np.median([timed(run) for _ in range(repeats)]) / 1e9


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def model_config(name: str, particles: int, compute_dtype: str, linear_skip: bool) -> ModelConfig:
    c = CONFIGS[name]
    return default_model_config(
        n_genes=c["G"],
        n_perturbations=c["T"],
        n_latent=c["L"],
        n_particles=particles,
        basal_encoder_n_hidden=c["basal"],
        decoder_n_hidden=c["decoder"],
        embedding_encoder_n_hidden=c["embedding"],
        compute_dtype=compute_dtype,
        decoder_linear_skip=linear_skip,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", choices=sorted(CONFIGS), default="adamson")
    parser.add_argument("--steps", type=int, default=30)
    defaults = default_config()  # the default model, optimiser and loss of a training run
    parser.add_argument("--particles", type=int, default=defaults.model.n_particles)
    parser.add_argument(
        "--compute_dtype", choices=COMPUTE_DTYPES, default=defaults.model.compute_dtype
    )
    parser.add_argument(
        "--no_linear_skip", action="store_true", help="the decoder without its linear skip"
    )
    parser.add_argument(
        "--no_xla_flags", action="store_true", help="without cradle_jax.xla_flags (as before)"
    )
    args = parser.parse_args()
    added = () if args.no_xla_flags else tune_cpu_backend()
    c = CONFIGS[args.config]
    cfg = model_config(args.config, args.particles, args.compute_dtype, not args.no_linear_skip)
    batch, stats = synthetic_batch(c["G"], c["T"], c["batch"])
    batch, stats = jax.device_put(batch), jax.device_put(stats)
    train = defaults.train
    optimizer = make_optimizer(
        train.learning_rate,
        train.weight_decay,
        train.clip_norm,
        train.mask_lr_scale,
        train.dispersion_lr_scale,
    )
    params = jax.jit(init_params, static_argnames="cfg")(jax.random.key(0), batch, stats, cfg)
    state = TrainState.create(params, optimizer)
    step = make_train_step(cfg, resolve_loss_config(defaults.loss), optimizer)
    run_key = jax.random.key_data(jax.random.key(1))

    start = time.perf_counter()
    compiled = step.lower(state, batch, stats, run_key).compile()
    compile_s = time.perf_counter() - start
    xla_flops = compiled.cost_analysis()["flops"]
    analytic_flops = cradle_step_flops(cfg, c["batch"])
    reference, reference_flops = matmul_reference()
    for _ in range(2):  # warm-up
        state, loss, _ = compiled(state, batch, stats, run_key)
        jax.block_until_ready((state, loss))
    step_times, matmul_times = [], []
    for _ in range(args.steps):
        start = time.perf_counter()
        state, loss, _ = compiled(state, batch, stats, run_key)
        jax.block_until_ready((state, loss))
        step_times.append(time.perf_counter() - start)
        matmul_times.append(timed(reference))
    step_s = float(np.median(step_times))
    roofline = reference_flops / float(np.median(matmul_times)) / 1e9

    def achieved(flops: float) -> str:
        rate = flops / step_s / 1e9
        return (
            f"{flops / 1e9:.1f} GFLOP/step, {rate:.1f} GFLOP/s, {rate / roofline:.3f} of roofline"
        )

    device = f"{jax.devices()[0].device_kind} ({jax.default_backend()})"
    print(f"device: {device}, jax {jax.__version__}; XLA flags added: {' '.join(added) or 'none'}")
    sizes = f"G={c['G']} T={c['T']} L={c['L']} batch={c['batch']} P={cfg.n_particles}"
    skip = "with" if cfg.decoder_linear_skip else "without"
    print(f"config {args.config}: {sizes}, compute_dtype {cfg.compute_dtype}, {skip} linear skip")
    print(f"compile {compile_s:.1f} s; step median {step_s * 1e3:.1f} ms over {args.steps} steps")
    print(f"train step: {c['batch'] / step_s:,.0f} cells/s; loss {float(loss):.2f}")
    print(f"reference in this run: fp32 matmul {MATMUL_SIZE}³ {roofline:.1f} GFLOP/s (median)")
    print(f"XLA cost analysis: {achieved(xla_flops)}")
    print(f"analytic (matrix products): {achieved(analytic_flops)}")
    print(f"peak host memory {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6:.2f} GB")


if __name__ == "__main__":
    main()
