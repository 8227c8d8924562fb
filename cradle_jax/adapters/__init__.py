"""Dataset adapters: the four papers' files mapped onto our data contract (docs/data.md#adapters).

The adapters live in the package rather than in experiments/, so that
`cradle-jax prepare --adapter NAME` works from a pip install without the repository, and
experiments/README.md points here. Each adapter is a function `prepare(adata) -> AnnData` that
returns a new AnnData with raw integer counts in X, gene symbols as var_names, an obs column
`perturbation` (`non-targeting` for controls, pairs joined by `+`) and the six QC metric columns
when the input had them all. A file laid out otherwise can be prepared by a `.py` file of one's
own that defines the same function, passed by path.
"""

import importlib.util
import sys
from collections.abc import Callable
from pathlib import Path

import anndata as ad

from cradle_jax.adapters import adamson, dixit, norman, replogle
from cradle_jax.data.errors import DataError

Adapter = Callable[[ad.AnnData], ad.AnnData]

ADAPTERS: dict[str, Adapter] = {
    "adamson": adamson.prepare,
    "dixit": dixit.prepare,
    "norman": norman.prepare,
    "replogle": replogle.prepare,
}


def load_adapter(name_or_path: str) -> Adapter:
    """The built-in adapter of that name, or `prepare` from the Python file at that path."""
    if name_or_path in ADAPTERS:
        return ADAPTERS[name_or_path]
    if name_or_path.endswith(".py") or "/" in name_or_path:
        return _from_file(Path(name_or_path))
    raise DataError(
        f"unknown adapter {name_or_path!r}: the built-in ones are {', '.join(ADAPTERS)}; "
        "or give the path of a .py file that defines prepare(adata)"
    )


def _from_file(path: Path) -> Adapter:
    if not path.is_file():
        raise DataError(f"adapter file {path} does not exist")
    name = f"cradle_jax_user_adapter_{path.stem}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise DataError(f"adapter file {path} cannot be imported as Python")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses and pickling look a module up by its name
    try:
        spec.loader.exec_module(module)
    except Exception as err:  # the user's file: any error means it cannot be used
        del sys.modules[name]
        reason = f"{type(err).__name__}: {err}".splitlines()[0]
        raise DataError(f"adapter file {path} failed to import ({reason})") from err
    prepare = getattr(module, "prepare", None)
    if not callable(prepare):
        raise DataError(f"adapter file {path} defines no function prepare(adata)")
    return prepare
