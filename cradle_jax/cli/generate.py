"""`cradle-jax generate`: artifact-free cells for perturbations and unseen combinations."""

from absl import flags

from cradle_jax.cli.common import EXPORT, N_CELLS, WORKDIR, check_out_file
from cradle_jax.config import EVAL_LIBRARY
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
    "library size of every generated cell; default: generate 10000 (the original's), predict "
    "the depth of the --real file's QC-pass control cells (each cell draws one of theirs)",
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
    library = EVAL_LIBRARY if LIBRARY.value is None else LIBRARY.value
    adata = generated_anndata(bundle, labels, n_cells, seed=seed, library=library)
    path = write_anndata(adata, out)
    print(f"wrote {path}: {adata.n_obs} cells x {adata.n_vars} genes ({', '.join(labels)})")
