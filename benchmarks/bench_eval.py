"""Evaluation benchmark: model ATE, QC pass rate of generated cells and predictive IWELBO speed.

`cradle-jax evaluate` spends its time in three places (docs/metrics.md#model-ate,
docs/metrics.md#qc-pass-rate, docs/metrics.md#iwelbo), each measured here with the code the
evaluation runs and its default settings (`cradle_jax.config.eval_config`):

1. model ATE (`cradle_jax.evaluate.scores.ate.model_ate`): 2,500 particles (rounded up to
   whole chunks of 128) for control and each of T = 100 single perturbations; generated cells/s
   (particles × labels), the first call (compiles) and the second (compiled) timed apart;
2. QC pass rate (`evaluate.generation.prior.generate_cells` then
   `evaluate.scores.qc_rate.score_generated_cells`, scanpy QC metrics + Scrublet on CPU, the real
   data's thresholds): 100 cells per label for control and every single, generation and scoring
   timed apart; cells/s;
3. test IWELBO (`cradle_jax.train.iwelbo.split_iwelbo`, 100 particles, batches of 128) on the
   test split of a simulated dataset; cells/s end to end (it compiles on every call) and of the
   compiled per-batch program alone.

The model is the Adamson architecture (G = 2000 genes, L = 100, basal encoder 200, decoder 400,
embedding encoder 400) at random initialisation (`init_params`), which runs the same programs as
a trained one. Vocabulary, gene names, QC thresholds and the IWELBO cells come from one simulated
dataset (`cradle_jax.data.simulate`) with the same G and T. The reference measured in the same run
is the device's fp32 matmul throughput (`bench_train_step.matmul_gflops`); FLOPs of the compiled
ATE chunk and IWELBO batch come from XLA's cost analysis. Peak host memory is printed at the end.

    python benchmarks/bench_eval.py                # Adamson sizes, T = 100 (needs an accelerator)
    python benchmarks/bench_eval.py --quick        # tiny sizes, < 1 minute on a laptop CPU
"""

import argparse
import dataclasses
import logging
import resource
import time
import warnings

import jax
import jax.numpy as jnp
import numpy as np
from bench_train_step import CONFIGS, matmul_gflops

from cradle_jax.config import EVAL_LIBRARY, data_config, eval_config
from cradle_jax.data.batches import batch_indices, build_local_batch
from cradle_jax.data.dataset import load_perturb_data
from cradle_jax.data.simulate import SimulationConfig, simulate
from cradle_jax.evaluate.generation.prior import generate_cells, sample_good_path
from cradle_jax.evaluate.scores.ate import model_ate
from cradle_jax.evaluate.scores.qc_rate import score_generated_cells
from cradle_jax.models.config import default_model_config
from cradle_jax.train.inputs import batch_arrays, split_stats
from cradle_jax.train.iwelbo import split_iwelbo
from cradle_jax.train.keys import purpose_key
from cradle_jax.train.mesh import data_mesh, replicate
from cradle_jax.train.objective import (
    init_params,
    placeholder_inputs,
    predictive_iwelbo,
    sample_global_posterior,
)
from cradle_jax.xla_flags import tune_cpu_backend

# Tiny sizes that run end to end in under a minute on two CPU cores, yet with Scrublet still
# calling doublets on the generated cells: ≥ 100 cells per QC chunk, and enough genes (G ≳ 700)
# that the near-uniform cells of a random-init model have the ≥ 30 variable genes it needs.
QUICK = dict(
    G=1000, T=5, L=8, basal=16, decoder=16, embedding=16, cells=1200,
    particles=64, chunk=32, qc_cells=200, iwelbo_particles=8, iwelbo_batch=64, matmul=512,
)  # fmt: skip


def timed(fn, *args, **kwargs):
    """(result, seconds) of one call, device work included."""
    start = time.perf_counter()
    result = jax.block_until_ready(fn(*args, **kwargs))
    return result, time.perf_counter() - start


def gflops_line(flops: float, seconds: float, reference: float) -> str:
    achieved = flops / seconds / 1e9
    return (
        f"XLA cost analysis {flops / 1e9:.2f} GFLOP, {achieved:.1f} GFLOP/s achieved, "
        f"ratio to fp32 matmul {achieved / reference:.3f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", choices=sorted(CONFIGS), default="adamson")
    parser.add_argument("--perturbations", type=int, default=100, help="T singles (default 100)")
    parser.add_argument(
        "--particles",
        type=int,
        default=None,
        help=f"model-ATE particles (eval config: {eval_config().ate_particles})",
    )
    parser.add_argument(
        "--cells", type=int, default=10_000, help="simulated cells (IWELBO uses the 20%% test)"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="tiny sizes, to check the script")
    parser.add_argument(
        "--no_xla_flags", action="store_true", help="without cradle_jax.xla_flags (as before)"
    )
    args = parser.parse_args()
    added = () if args.no_xla_flags else tune_cpu_backend()
    # scanpy warns about generated cells without counts once per QC chunk, and the QC code logs
    # each metric it cannot compute once per chunk: the criteria used are printed instead.
    warnings.filterwarnings("ignore", "Some cells have zero counts")
    logging.getLogger("cradle_jax.data.qc").setLevel(logging.ERROR)

    ev = eval_config()
    c = dict(CONFIGS[args.config], T=args.perturbations)
    sizes = dict(
        cells=args.cells, particles=ev.ate_particles, chunk=ev.ate_chunk, qc_cells=ev.qc_cells,
        iwelbo_particles=ev.iwelbo_particles, iwelbo_batch=ev.iwelbo_batch_size, matmul=2048,
    )  # fmt: skip
    if args.quick:
        c.update({k: v for k, v in QUICK.items() if k in c})
        sizes.update({k: v for k, v in QUICK.items() if k in sizes})
    if args.particles is not None:
        sizes["particles"] = args.particles
    G, T = c["G"], c["T"]

    print(f"XLA flags added: {' '.join(added) or 'none'}")
    print(
        f"device: {jax.devices()[0].device_kind} ({jax.default_backend()}), jax {jax.__version__}"
    )
    reference = matmul_gflops(n=sizes["matmul"])
    print(f"reference in this run: fp32 matmul ({sizes['matmul']}³) {reference:.1f} GFLOP/s")

    # Data: a simulated dataset of G genes and T singles (vocabulary, gene names, real QC
    # thresholds, test cells); the planted truth is not used, so its Monte Carlo is minimal.
    start = time.perf_counter()
    sim = simulate(
        SimulationConfig(
            n_cells=sizes["cells"],
            n_genes=G,
            n_perturbations=T,
            n_pairs=0,
            n_latent=min(10, c["L"]),
            ate_cells=1,
            seed=args.seed,
        )
    )
    data = load_perturb_data(sim.adata, data_config(), seed=args.seed)
    data_s = time.perf_counter() - start
    vocabulary = data.vocabulary
    labels = list(vocabulary.singles)  # every single, control added by model_ate
    n_test = len(data.cells("test"))
    print(
        f"config {args.config}{' (quick)' if args.quick else ''}: G={G} T={T} L={c['L']} "
        f"basal={c['basal']} decoder={c['decoder']} embedding={c['embedding']}; simulated "
        f"{data.n_cells} cells ({n_test} test) in {data_s:.1f} s"
    )

    cfg = default_model_config(
        n_genes=G,
        n_perturbations=vocabulary.size,
        n_qc=data.qc.shape[1],
        n_latent=c["L"],
        basal_encoder_n_hidden=c["basal"],
        decoder_n_hidden=c["decoder"],
        embedding_encoder_n_hidden=c["embedding"],
    )
    init_key = jax.random.wrap_key_data(purpose_key(args.seed, "init"))
    params = jax.jit(init_params, static_argnames="cfg")(init_key, *placeholder_inputs(cfg), cfg)
    params = jax.device_get(params)

    # 1. Model ATE: control + T labels, particles rounded up to whole chunks.
    chunk = min(sizes["chunk"], sizes["particles"])
    n_chunks = -(-sizes["particles"] // chunk)
    generated = n_chunks * chunk * (len(labels) + 1)
    ate_key = purpose_key(args.seed, "evaluate/ate")

    def run_ate():
        return model_ate(
            params, cfg, vocabulary, labels, ate_key,
            n_particles=sizes["particles"], chunk=chunk, from_means=ev.ate_from_means,
        )  # fmt: skip

    ate, first_s = timed(run_ate)
    ate, ate_s = timed(run_ate)
    assert ate.shape == (T, G)
    assert np.isfinite(ate).all()
    print(
        f"model ATE: {n_chunks * chunk} particles × {len(labels) + 1} labels = {generated:,} "
        f"cells; first call {first_s:.2f} s (compile ≈ {first_s - ate_s:.2f} s), second "
        f"{ate_s:.2f} s: {generated / ate_s:,.0f} generated cells/s"
    )
    full = -(-ev.ate_particles // chunk) * chunk * (len(labels) + 1)
    if full != generated:
        estimate = full / generated * ate_s
        print(f"  at the evaluation's {ev.ate_particles:,} particles: {estimate:.0f} s (estimate)")
    chunk_cfg = dataclasses.replace(cfg, n_particles=chunk)
    dosage = jnp.asarray(vocabulary.dosage([vocabulary.control_label, *labels]).toarray())
    lowered = sample_good_path.lower(params, dosage, jax.random.key(0), EVAL_LIBRARY, chunk_cfg)
    chunk_flops = lowered.compile().cost_analysis()["flops"]
    ate_gflops = gflops_line(chunk_flops * n_chunks, ate_s, reference)
    print(f"  sample_good_path per chunk × {n_chunks} chunks: {ate_gflops}")

    # 2. QC pass rate: qc_cells generated cells per label (control included) at ℓ = 10⁴, scored
    # with the real data's thresholds, as `cradle_jax.evaluate.report.run` does (it does this twice,
    # at ℓ = 10⁴ and at the real median library size).
    qc_labels = [vocabulary.control_label, *labels]
    qc_dosage = vocabulary.dosage(qc_labels).toarray()
    qc_key = purpose_key(args.seed, "evaluate/qc")
    n_qc = sizes["qc_cells"] * len(qc_labels)

    def run_generate():
        return generate_cells(
            params, cfg, qc_dosage, sizes["qc_cells"], qc_key, library=EVAL_LIBRARY, chunk=chunk
        )

    cells, gen_first_s = timed(run_generate)
    cells, gen_s = timed(run_generate)
    counts = cells.reshape(-1, cells.shape[-1])
    cell_labels = np.repeat(np.asarray(qc_labels, dtype=object), sizes["qc_cells"])
    start = time.perf_counter()
    _, rates = score_generated_cells(
        counts, cell_labels, data.gene_names, data.qc_thresholds,
        seed=args.seed, doublets=ev.qc_doublets,
    )  # fmt: skip
    score_s = time.perf_counter() - start
    print(
        f"QC pass rate: {sizes['qc_cells']} cells × {len(qc_labels)} labels = {n_qc:,} cells; "
        f"generate first {gen_first_s:.2f} s, second {gen_s:.2f} s ({n_qc / gen_s:,.0f} cells/s); "
        f"score (scanpy + Scrublet, doublets={ev.qc_doublets}) {score_s:.2f} s "
        f"({n_qc / score_s:,.0f} cells/s); together {n_qc / (gen_s + score_s):,.0f} cells/s; "
        f"pass rate t3 {rates['qc_pass_rate_t3']:.3f} (random init)"
    )
    print(f"  criteria: {', '.join(rates['criteria'])}")

    # 3. Test IWELBO: end to end (split_iwelbo jit-compiles its programs on every call), then the
    # compiled per-batch program alone on the first test batch.
    mesh = data_mesh()
    iwelbo_key = purpose_key(args.seed, "evaluate/iwelbo")
    P, B = sizes["iwelbo_particles"], sizes["iwelbo_batch"]
    value, iwelbo_s = timed(
        split_iwelbo, replicate(params, mesh), data, "test", cfg, mesh,
        n_particles=P, batch_size=B, key_data=iwelbo_key,
    )  # fmt: skip
    print(
        f"test IWELBO: {n_test} cells, {P} particles, batches of {B}: {iwelbo_s:.2f} s end to end "
        f"(compile included): {n_test / iwelbo_s:,.0f} cells/s; IWELBO {value:.1f} (random init)"
    )
    icfg = dataclasses.replace(cfg, n_particles=P)
    global_samples = jax.jit(sample_global_posterior, static_argnames="cfg")(
        params, jax.random.key(1), icfg
    )
    index = next(batch_indices(data, "test", B, seed=0, shuffle=False))
    batch = jax.device_put(batch_arrays(build_local_batch(data, index, slice(0, B))))
    stats = jax.device_put(split_stats(data, "test"))

    def batch_sum(params, global_samples, batch, stats, key):
        return jnp.sum(predictive_iwelbo(params, global_samples, batch, stats, key, icfg))

    start = time.perf_counter()
    compiled = (
        jax.jit(batch_sum).lower(params, global_samples, batch, stats, jax.random.key(2)).compile()
    )
    compile_s = time.perf_counter() - start
    inputs = (params, global_samples, batch, stats, jax.random.key(2))
    timed(compiled, *inputs)
    times = [timed(compiled, *inputs)[1] for _ in range(5 if args.quick else 20)]
    batch_s = float(np.median(times))
    print(
        f"  compiled batch program: compile {compile_s:.2f} s, median {batch_s * 1e3:.1f} ms per "
        f"batch of {B}: {B / batch_s:,.0f} cells/s; "
        + gflops_line(compiled.cost_analysis()["flops"], batch_s, reference)
    )
    print(f"peak host memory {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6:.2f} GB")


if __name__ == "__main__":
    main()
