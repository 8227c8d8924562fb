"""`cradle-jax export`: one file with a trained model and what evaluation needs from its data."""

from absl import flags

from cradle_jax.cli.common import WORKDIR, check_out_file
from cradle_jax.cli.evaluate import evaluation_settings
from cradle_jax.evaluate.report.export import export_model
from cradle_jax.evaluate.report.workdir import load_training_data, truth_beside
from cradle_jax.evaluate.scores.data_reference import data_reference
from cradle_jax.train.bundle import load_workdir


def run(out: str | None) -> None:
    if not WORKDIR.value:
        raise flags.ValidationError("export needs --workdir DIR")
    if not out:
        raise flags.ValidationError("export needs --out FILE.cradle")
    check_out_file(out)
    bundle = load_workdir(WORKDIR.value)
    data = load_training_data(bundle, WORKDIR.value)
    reference = data_reference(
        bundle, data, evaluation_settings(bundle), seed=bundle.config.seed,
        truth=truth_beside(bundle.config.data.path),
    )  # fmt: skip
    path = export_model(bundle, reference, out)
    print(f"wrote {path}: {len(bundle.gene_names)} genes, {bundle.vocabulary.size} perturbations")
