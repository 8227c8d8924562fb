"""`cradle-jax generate`: artifact-free cells for perturbations and unseen combinations, at the
training data's depth unless --library gives one (docs/data.md#training-depth)."""

from absl import flags

from cradle_jax.cli.common import EXPORT, N_CELLS, WORKDIR, check_out_file
from cradle_jax.evaluate.generation.cells import (
    generated_anndata,
    parse_perturbations,
    write_anndata,
)
from cradle_jax.evaluate.report.export import load_export
from cradle_jax.train.bundle import load_workdir

PERTURBATIONS = flags.DEFINE_string(
    "perturbations", None, "generate, predict: comma-separated labels, e.g. 'A,B+C' "
    "(combinations of known singles are allowed)"
)  # fmt: skip
LIBRARY = flags.DEFINE_float(
    "library",
    None,
    "library size of every generated cell (a fixed depth); default: each cell draws one of the "
    "library sizes of QC-pass control cells: generate, of the training data's (recorded with "
    "the model; 10000 for a model saved before that record, with a warning), predict, of the "
    "--real file's",
)


def run(seed: int, out: str | None) -> None:
    if bool(WORKDIR.value) == bool(EXPORT.value):
        raise flags.ValidationError("generate needs one of --workdir DIR or --export FILE")
    if not PERTURBATIONS.value:
        raise flags.ValidationError("generate needs --perturbations 'A,B+C'")
    if not out:
        raise flags.ValidationError("generate needs --out cells.h5ad")
    check_out_file(out)
    bundle = load_workdir(WORKDIR.value) if WORKDIR.value else load_export(EXPORT.value)[0]
    labels = parse_perturbations(PERTURBATIONS.value, bundle)
    n_cells = 100 if N_CELLS.value is None else N_CELLS.value
    adata = generated_anndata(bundle, labels, n_cells, seed=seed, library=LIBRARY.value)
    path = write_anndata(adata, out)
    print(
        f"wrote {path}: {adata.n_obs} cells x {adata.n_vars} genes ({', '.join(labels)}), "
        f"{_depth_words(adata.uns['cradle_jax']['library_size'])}"
    )


def _depth_words(record: dict) -> str:
    """The generated cells' depth as uns records it, in a few words."""
    if "fixed" in record:
        return f"library size {record['fixed']:g}"
    return f"library sizes drawn from {record['drawn_from']} (median {record['median']:g})"
