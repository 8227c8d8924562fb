"""Writing a simulation (data and truth, atomically) and reading its truth back."""

import os
import tempfile
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from cradle_jax.data.errors import DataError
from cradle_jax.data.simulate.generate import Simulation


def clean_counts(truth: dict[str, np.ndarray], n_genes: int) -> sp.csr_matrix:
    """The clean counts of the artifact cells, (len(truth["clean_rows"]), G) CSR float32."""
    shape = (truth["clean_rows"].size, n_genes)
    return sp.csr_matrix(
        (truth["clean_data"], truth["clean_indices"], truth["clean_indptr"]), shape=shape
    )


def write_simulation(sim: Simulation, out_path: str | os.PathLike) -> tuple[Path, Path]:
    """Write `out_path` (.h5ad) and `<stem>.truth.npz` beside it, each atomically.

    Both go to temporary files in the target directory first and are renamed into place only
    when both are complete; on any error the temporaries are removed and the error re-raised.
    Records the truth file's name in sim.adata.uns["simulation"]["truth_file"].
    """
    path = Path(out_path)
    if path.suffix != ".h5ad":
        raise DataError(f"simulation output {str(path)!r} must end in .h5ad")
    if path.is_dir():
        raise DataError(f"simulation output {str(path)!r} is a directory")
    truth_path = path.with_name(f"{path.stem}.truth.npz")
    path.parent.mkdir(parents=True, exist_ok=True)
    sim.adata.uns.setdefault("simulation", {})["truth_file"] = truth_path.name

    umask = os.umask(0)
    os.umask(umask)
    temporaries: list[Path] = []
    try:
        for target in (path, truth_path):
            fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{target.name}.", suffix=".tmp")
            os.close(fd)
            temporaries.append(Path(name))
            os.chmod(name, 0o666 & ~umask)  # mkstemp makes 0600; the results are ordinary files
        tmp_data, tmp_truth = temporaries
        sim.adata.write_h5ad(tmp_data)
        with open(tmp_truth, "wb") as handle:
            np.savez(handle, **sim.truth)
        os.replace(tmp_truth, truth_path)
        try:
            os.replace(tmp_data, path)
        except BaseException:
            truth_path.unlink(missing_ok=True)  # never leave a truth file without its data
            raise
    except BaseException:
        for tmp in temporaries:
            tmp.unlink(missing_ok=True)
        raise
    return path, truth_path


def load_truth(npz_path: str | os.PathLike) -> dict[str, np.ndarray]:
    """The truth arrays written by write_simulation."""
    path = Path(npz_path)
    if not path.is_file():
        raise DataError(f"simulation truth file {str(path)!r} not found")
    with np.load(path, allow_pickle=False) as archive:
        return {key: archive[key] for key in archive.files}
