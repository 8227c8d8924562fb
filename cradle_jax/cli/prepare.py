"""`cradle-jax prepare`: map a paper's .h5ad onto the data contract with a dataset adapter."""

from pathlib import Path

from absl import flags

from cradle_jax import atomic
from cradle_jax.adapters import ADAPTERS, load_adapter
from cradle_jax.adapters.contract import check_contract, describe
from cradle_jax.cli.common import check_out_file
from cradle_jax.data.dataset import read_h5ad

ADAPTER = flags.DEFINE_string(
    "adapter",
    None,
    f"prepare: a built-in adapter ({', '.join(ADAPTERS)}) or the path of a .py file defining "
    "prepare(adata) -> AnnData",
)
IN = flags.DEFINE_string("in", None, "prepare: the paper's .h5ad to read")


def run(out: str | None) -> None:
    """Read --in, run the adapter, check the result and write it to `out` atomically."""
    if not ADAPTER.value or not IN.value or not out:
        raise flags.ValidationError("prepare needs --adapter NAME --in FILE.h5ad --out FILE.h5ad")
    check_out_file(out)
    out_path = Path(out)
    adapter = load_adapter(ADAPTER.value)
    result = adapter(read_h5ad(IN.value))
    summary = check_contract(result)
    with atomic.replacing(out_path) as tmp:
        result.write_h5ad(tmp)
    print(f"wrote {out_path}: {describe(summary)}")
