r"""How well do the four models recover planted perturbation effects? (`make accuracy`)

One fixed simulated screen with planted truth: 20,000 cells x 1,000 genes, 30 singles, 20 pairs
(40 % with a planted non-additive interaction), artifacts whose damaged-cell rate is five times
higher under a quarter of the singles. Every pair is held out (the split column puts pair cells
in test), so pairs are unseen combinations; singles and controls are split 80/20 train/val.
cradle, sams_vae and cvae train on the whole file, svae_plus (single perturbations only) on
the same cells without the pairs; each on 3 seeds, with experiments/configs/synthetic.py.

The table compares each model's ATE (on the evaluation scale, from generated artifact-free
cells) with the planted true ATE: Pearson rho and R^2, flattened over labels x genes, on the
seen singles, on all unseen pairs and on the interacting ones. Beside the models:
  * ceiling: the data's own ATE over its QC-pass cells (all splits) against the truth, the best
    an estimate from these cells can do;
  * additive: control mean plus the sum of the singles' effects, from training QC-pass cells;
  * control_mean: no effect at all (rho undefined, R^2 ~ 0).
QC pass: the share of generated cells (100 per label, control included, at the real cells'
median library size) that pass the real data's QC thresholds (t = 3), beside the pass rate of
the real cells that the simulator left artifact-free.

    python benchmarks/accuracy.py --workdir runs/accuracy     # make accuracy; ~20 min on 2 cores

Finished runs are kept in the workdir and not retrained, so an interrupted benchmark resumes.
"""

import argparse
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd

from cradle_jax.xla_flags import tune_cpu_backend

tune_cpu_backend()

from cradle_jax.cli.sweep import parse_set  # noqa: E402
from cradle_jax.config import load_config_file  # noqa: E402
from cradle_jax.data.dataset import PerturbData, load_perturb_data  # noqa: E402
from cradle_jax.data.seeding import host_rng  # noqa: E402
from cradle_jax.data.simulate import SimulationConfig, simulate  # noqa: E402
from cradle_jax.data.simulate.config import SEPARATOR  # noqa: E402
from cradle_jax.data.simulate.files import load_truth, write_simulation  # noqa: E402
from cradle_jax.evaluate.generation.prior import generate_cells  # noqa: E402
from cradle_jax.evaluate.scores.ate import data_ate, model_ate  # noqa: E402
from cradle_jax.evaluate.scores.baselines import baseline_ates  # noqa: E402
from cradle_jax.evaluate.scores.metrics import truth_metrics  # noqa: E402
from cradle_jax.evaluate.scores.qc_rate import score_generated_cells  # noqa: E402
from cradle_jax.evaluate.scores.split_reference import labels_by_split  # noqa: E402
from cradle_jax.sweep.spec import apply_overrides  # noqa: E402
from cradle_jax.train.bundle import load_workdir  # noqa: E402
from cradle_jax.train.keys import purpose_key  # noqa: E402
from cradle_jax.train.loop import train_and_evaluate  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "experiments" / "configs" / "synthetic.py"
MODELS = ("cradle", "sams_vae", "cvae", "svae_plus")
SINGLES_ONLY = ("svae_plus",)
SIMULATION = SimulationConfig(
    n_cells=20_000,
    n_genes=1_000,
    n_perturbations=30,
    n_pairs=20,
    interaction_fraction=0.4,
    artifact_fraction=0.15,
    artifact_perturbation_dependence=5.0,
    seed=0,
)
GROUPS = ("singles", "pairs", "interacting pairs")
QC_CELLS = 100  # generated cells per label for the QC pass rate
ATE_PARTICLES = 1024


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", default="runs/accuracy")
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument(
        "--set", nargs="*", default=[], metavar="SECTION.FIELD=VALUE",
        help="config overrides for every run, e.g. train.max_epochs=20 loss.cf_kl=reference",
    )  # fmt: skip
    return parser.parse_args()


def write_data(workdir: Path) -> tuple[Path, Path]:
    """The simulated screen with a split column (pairs in test), and its singles-only subset."""
    full, singles = workdir / "simulated.h5ad", workdir / "simulated_singles.h5ad"
    if full.exists() and singles.exists():
        return full, singles
    sim = simulate(SIMULATION)
    adata = sim.adata
    is_pair = adata.obs["perturbation"].astype(str).str.contains(SEPARATOR, regex=False).to_numpy()
    rng = host_rng(SIMULATION.seed, "accuracy/split")
    split = np.where(rng.random(adata.n_obs) < 0.8, "train", "val").astype(object)
    split[is_pair] = "test"
    adata.obs["split"] = pd.Categorical(split)
    write_simulation(sim, full)
    adata[~is_pair].copy().write_h5ad(singles)
    return full, singles


def run_config(data_path: Path, model: str, seed: int, overrides: list[str]):
    """The synthetic config for one run on `data_path`, with the `--set` overrides."""
    config = load_config_file(CONFIG)
    config.data.path = str(data_path)
    config.data.split = "column"
    config.model.name = model
    config.seed = seed
    return apply_overrides(config, parse_set(overrides, config))


def agreement(truth: np.ndarray, estimate: np.ndarray) -> tuple[float, float]:
    """Pearson rho and R^2 of an estimate against the truth, flattened over labels x genes."""
    metrics = truth_metrics(truth, estimate, {})
    return metrics["truth_ATE_pearsonr"], metrics["truth_ATE_r2"]


class Truth:
    """The planted ATE of the file's labels and the label groups scored."""

    def __init__(self, data: PerturbData, truth: dict):
        self.labels = labels_by_split(data)["all"]
        planted = [str(label) for label in truth["labels"]]
        self.ate = truth["true_ate"][[planted.index(label) for label in self.labels]]
        singles = truth["singles"].astype(str)
        interacting = {
            f"{singles[a]}{SEPARATOR}{singles[b]}"
            for (a, b), flag in zip(truth["pairs"], truth["has_interaction"], strict=True)
            if flag
        }
        is_pair = np.array([SEPARATOR in label for label in self.labels])
        self.groups = {
            "singles": ~is_pair,
            "pairs": is_pair,
            "interacting pairs": np.array([label in interacting for label in self.labels]),
        }

    def scores(self, estimate: np.ndarray, labels: list[str]) -> dict[str, tuple[float, float]]:
        rows = {label: i for i, label in enumerate(labels)}
        result = {}
        for group, members in self.groups.items():
            wanted = [label for label, m in zip(self.labels, members, strict=True) if m]
            if not wanted or any(label not in rows for label in wanted):
                continue
            result[group] = agreement(
                self.ate[members], estimate[[rows[label] for label in wanted]]
            )
        return result


def qc_pass_of_generated(bundle, data: PerturbData, labels: list[str], seed: int) -> float:
    """Share of generated cells (QC_CELLS per label and control) passing the real thresholds."""
    names = [bundle.vocabulary.control_label, *labels]
    library = float(np.median(data.library_size))
    cells = generate_cells(
        bundle.params, bundle.cfg, bundle.vocabulary.dosage(names).toarray(), QC_CELLS,
        purpose_key(seed, "accuracy/qc"), library=library,
    )  # fmt: skip
    _, rates = score_generated_cells(
        cells.reshape(-1, cells.shape[-1]), np.repeat(np.asarray(names, object), QC_CELLS),
        bundle.gene_names, bundle.qc_thresholds, seed=seed,
    )  # fmt: skip
    return float(rates["qc_pass_rate_t3"])


def run_one(path: Path, model: str, seed: int, args, truth: Truth, workdir: Path) -> dict:
    """Train (or reuse) one model and score it; the row of the results table."""
    out = workdir / "runs" / f"{model}-seed{seed}"
    result_file = out / "accuracy.json"
    if result_file.exists():
        return json.loads(result_file.read_text())
    config = run_config(path, model, seed, args.set)
    started = time.perf_counter()
    summary = train_and_evaluate(config, out)
    train_seconds = time.perf_counter() - started
    bundle = load_workdir(out)
    data = load_perturb_data(path, config.data, seed)
    labels = labels_by_split(data)["all"]
    estimate = model_ate(
        bundle.params, bundle.cfg, bundle.vocabulary, labels,
        purpose_key(seed, "accuracy/ate"), n_particles=ATE_PARTICLES,
        chunk=config.eval.ate_chunk, from_means=config.eval.ate_from_means,
    )  # fmt: skip
    row = {
        "model": model,
        "seed": seed,
        "scores": truth.scores(estimate, labels),
        "qc_pass": qc_pass_of_generated(bundle, data, labels, seed),
        "train_seconds": train_seconds,
        "epochs": summary["epochs"],
        "best_epoch": summary["best_epoch"],
    }
    tmp = result_file.with_suffix(".tmp")
    tmp.write_text(json.dumps(row))
    tmp.replace(result_file)
    return row


def reference_rows(data: PerturbData, truth_dict: dict, truth: Truth) -> tuple[list[dict], float]:
    """Ceiling and baselines (seed-independent), and the real artifact-free cells' pass rate."""
    ceiling = data_ate(data, truth.labels, qc_pass=True)
    rows = [{"model": "ceiling (QC-pass data ATE)", "scores": truth.scores(ceiling, truth.labels)}]
    for name, table in baseline_ates(data, truth.labels).items():
        rows.append({"model": f"baseline {name}", "scores": truth.scores(table, truth.labels)})
    clean = truth_dict["artifact"] == 0
    real_pass = float(np.mean(data.qc[clean].max(axis=1) == 0))
    return rows, real_pass


def _cell(values: list[float]) -> str:
    values = [v for v in values if v is not None and np.isfinite(v)]
    if not values:
        return "—"
    if len(values) == 1:
        return f"{values[0]:.3f}"
    return f"{np.mean(values):.3f}±{np.std(values):.3f}"


def table(rows: list[dict], real_pass: float) -> str:
    header = ["model", "seeds"]
    for group in GROUPS:
        header += [f"{group} ρ", f"{group} R²"]
    header += ["QC pass", "train s"]
    lines = [" | ".join(header), " | ".join("---" for _ in header)]
    by_model: dict[str, list[dict]] = {}
    for row in rows:
        by_model.setdefault(row["model"], []).append(row)
    for model, runs in by_model.items():
        cells = [model, str(len(runs)) if "seed" in runs[0] else "—"]
        for group in GROUPS:
            for k in (0, 1):
                cells.append(_cell([r["scores"].get(group, (None, None))[k] for r in runs]))
        cells.append(_cell([r.get("qc_pass") for r in runs]))
        cells.append(_cell([r.get("train_seconds") for r in runs]).split("±")[0])
        lines.append(" | ".join(cells))
    lines.append(f"real artifact-free cells' QC pass rate: {real_pass:.3f}")
    return "\n".join(lines)


def main() -> None:
    args = parse_args()
    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    full, singles = write_data(workdir)
    truth_dict = load_truth(full.with_name(f"{full.stem}.truth.npz"))
    data = load_perturb_data(full, run_config(full, "cradle", 0, []).data, 0)
    truth = Truth(data, truth_dict)
    rows, real_pass = reference_rows(data, truth_dict, truth)
    for model in args.models:
        path = singles if model in SINGLES_ONLY else full
        for seed in args.seeds:
            row = run_one(path, model, seed, args, truth, workdir)
            print(f"{model} seed {seed}: {row['scores']} qc {row['qc_pass']:.3f}", flush=True)
            rows.append(row)
    report = table(rows, real_pass)
    report += f"\nwall time: {time.perf_counter() - started:.0f} s"
    (workdir / "accuracy.md").write_text(report + "\n")
    print(report)


if __name__ == "__main__":
    main()
