"""XLA flags measured to speed up training on CPUs, set before JAX starts its backend.

XLA:CPU hands reductions to YNNPACK, whose reductions over a leading axis (a particle or cell
axis, as in the gradients of per-gene and per-cell parameters) ran far slower than XLA's own on
our 2-core machines. The flag below keeps YNNPACK for matrix products and gives reductions back
to XLA, which made the train step faster (benchmarks/README.md#xla-flags).

The flags are added only for the jaxlib versions they were measured on, since XLA aborts at
start-up on a flag it does not know, and never over a setting of the same flag in XLA_FLAGS.
They only concern the CPU backend; GPU and TPU backends ignore them.
"""

import os
from importlib.metadata import PackageNotFoundError, version

CPU_FLAGS = {"0.10.2": ("--xla_cpu_experimental_ynn_fusion_type=-reduce",)}


def tune_cpu_backend() -> tuple[str, ...]:
    """Append the measured CPU flags to XLA_FLAGS; returns the flags it added.

    Effective only if called before the process's first JAX computation."""
    try:
        flags = CPU_FLAGS.get(version("jaxlib"), ())
    except PackageNotFoundError:
        return ()
    current = os.environ.get("XLA_FLAGS", "")
    added = tuple(flag for flag in flags if flag.split("=")[0] not in current)
    if added:
        os.environ["XLA_FLAGS"] = " ".join([current, *added]).strip()
    return added
