"""The device mesh of data parallelism (axis "data") and moving host data onto it
(docs/method.md#data-parallelism).

One code path for 1 CPU, N fake CPU devices, a multi-GPU node and several hosts: batches are
global `jax.Array`s whose rows are split over the mesh, everything else is replicated. On several
hosts each process builds only the rows its own devices hold and contributes them with
`jax.make_array_from_process_local_data`.
"""

from collections.abc import Sequence

import jax
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec

from cradle_jax.train.errors import RunError

DATA_AXIS = "data"


def data_mesh(devices: Sequence[jax.Device] | None = None) -> Mesh:
    """A 1-D mesh over `devices` (default: every device of every process)."""
    devices = jax.devices() if devices is None else list(devices)
    return Mesh(np.asarray(devices), (DATA_AXIS,), axis_types=(AxisType.Auto,))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, PartitionSpec())


def row_sharded(mesh: Mesh) -> NamedSharding:
    """Leading (cell) axis split over the mesh, other axes whole."""
    return NamedSharding(mesh, PartitionSpec(DATA_AXIS))


def check_batch_size(batch_size: int, mesh: Mesh) -> None:
    """Every device must get the same number of cells (docs/method.md#data-parallelism)."""
    if batch_size % mesh.size:
        raise RunError(
            f"train.batch_size {batch_size} does not divide by the {mesh.size} devices of the "
            f"mesh; use a multiple of {mesh.size}"
        )


def local_rows(mesh: Mesh, batch_size: int) -> slice:
    """The rows of a global batch that this process's devices hold (all rows on one host)."""
    index_map = row_sharded(mesh).addressable_devices_indices_map((batch_size,))
    starts = [index[0].start or 0 for index in index_map.values()]
    stops = [batch_size if index[0].stop is None else index[0].stop for index in index_map.values()]
    start, stop = min(starts), max(stops)
    if stop - start != sum(b - a for a, b in zip(starts, stops, strict=True)):
        raise ValueError("this process's devices do not hold one contiguous block of rows")
    return slice(start, stop)


def global_batch(local: dict[str, np.ndarray], mesh: Mesh, batch_size: int) -> dict[str, jax.Array]:
    """Assemble this process's rows of every field into global arrays of `batch_size` rows."""
    sharding = row_sharded(mesh)

    def assemble(value: np.ndarray) -> jax.Array:
        shape = (batch_size, *value.shape[1:])
        return jax.make_array_from_process_local_data(sharding, value, shape)

    return {name: assemble(value) for name, value in local.items()}


def replicate(tree, mesh: Mesh):
    """Put a pytree of host or device arrays on every device of the mesh."""
    return jax.device_put(tree, replicated(mesh))


def to_host(tree):
    """A pytree of replicated arrays as NumPy arrays: this process's copy, so it works on
    several hosts too, where a replicated array is not fully addressable."""
    return jax.tree.map(lambda a: np.asarray(a.addressable_data(0)), tree)
