"""Orbax checkpoints of a run: the latest train state (to resume) and the best parameters.

Two managers under `workdir/checkpoints/`: `latest/` keeps the two newest train states with their
Progress, saved every `checkpoint_every_steps` steps and at every epoch end; `best/` keeps the
parameters of the best validation loss. Orbax writes into a temporary directory and renames it
when complete, so a checkpoint half-written by a kill is never listed, never loaded, and is
cleaned up by the next manager.
"""

import contextlib
import errno
import shutil
from collections.abc import Iterator
from pathlib import Path

import jax
import orbax.checkpoint as ocp

from cradle_jax.train.errors import RunError
from cradle_jax.train.state import Progress, TrainState
from cradle_jax.train.workdir import CHECKPOINTS_DIR


def _manager(directory: Path, max_to_keep: int, arrays: str) -> ocp.CheckpointManager:
    """A manager of items `arrays` (a pytree of arrays) and `progress` (JSON)."""
    options = ocp.CheckpointManagerOptions(
        max_to_keep=max_to_keep, enable_async_checkpointing=False, cleanup_tmp_directories=True
    )
    handlers = {arrays: ocp.StandardCheckpointHandler(), "progress": ocp.JsonCheckpointHandler()}
    return ocp.CheckpointManager(directory.absolute(), options=options, item_handlers=handlers)


def _abstract(tree):
    return jax.tree.map(ocp.utils.to_shape_dtype_struct, tree)


def check_param_shapes(saved, expected, what: str) -> None:
    """Name the first parameter whose saved shape differs from the one the config builds."""
    saved_leaves = dict(jax.tree_util.tree_flatten_with_path(saved)[0])
    for path, leaf in jax.tree_util.tree_flatten_with_path(expected)[0]:
        name = jax.tree_util.keystr(path)
        if path not in saved_leaves:
            raise RunError(f"{what} has no parameter {name}: it was written by a different model")
        if tuple(saved_leaves[path].shape) != tuple(leaf.shape):
            raise RunError(
                f"{what} has parameter {name} of shape {tuple(saved_leaves[path].shape)}, "
                f"but this config builds {tuple(leaf.shape)}"
            )
    if len(saved_leaves) != len(jax.tree.leaves(expected)):
        raise RunError(f"{what} has parameters this config does not build: a different model")


NO_SPACE = (errno.ENOSPC, errno.EDQUOT)


def _is_disk_full(err: BaseException) -> bool:
    """True when `err`, or an error it was raised from or wraps, is "no space" or "quota"."""
    seen, todo = set(), [err]
    while todo:
        current = todo.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, OSError) and current.errno in NO_SPACE:
            return True
        if "No space left on device" in str(current) or "Disk quota exceeded" in str(current):
            return True
        todo += [current.__cause__, current.__context__, *getattr(current, "exceptions", ())]
    return False


class Checkpoints:
    """The latest and best checkpoints of one workdir."""

    def __init__(self, workdir: str | Path) -> None:
        self._workdir = Path(workdir)
        root = self._workdir / CHECKPOINTS_DIR
        self._root = root
        self._latest = _manager(root / "latest", max_to_keep=2, arrays="state")
        self._best = _manager(root / "best", max_to_keep=1, arrays="params")

    def latest_step(self) -> int | None:
        return self._latest.latest_step()

    def best_step(self) -> int | None:
        return self._best.latest_step()

    def save_latest(self, step: int, state: TrainState, progress: Progress) -> None:
        """Save the train state under its step number (each step is saved at most once)."""
        with self._disk_full_is_a_run_error(step):
            saved = self._latest.save(
                step,
                args=ocp.args.Composite(
                    state=ocp.args.StandardSave(state),
                    progress=ocp.args.JsonSave(progress.to_dict()),
                ),
            )
        if not saved:
            raise RuntimeError(f"checkpoint of step {step} exists already and was not replaced")

    def save_best(self, step: int, state: TrainState, progress: Progress) -> None:
        """Save the parameters as the best so far; a replayed step after a resume is kept as is.

        Replaying after a kill reproduces the same parameters, so an existing step is identical.
        """
        if step in self._best.all_steps():
            return
        with self._disk_full_is_a_run_error(step):
            self._best.save(
                step,
                args=ocp.args.Composite(
                    params=ocp.args.StandardSave(state.params),
                    progress=ocp.args.JsonSave(progress.to_dict()),
                ),
            )

    @contextlib.contextmanager
    def _disk_full_is_a_run_error(self, step: int) -> Iterator[None]:
        """A full disk while saving: the half-written checkpoint removed and one RunError that
        names the disk and the workdir; the checkpoints saved before stay, so a new launch
        resumes from the newest of them."""
        try:
            yield
        except Exception as err:
            if not _is_disk_full(err):
                raise
            for partial in self._root.glob("*/*.orbax-checkpoint-tmp*"):
                shutil.rmtree(partial, ignore_errors=True)
            free = shutil.disk_usage(self._root).free / 2**20
            raise RunError(
                f"no space left on the disk of workdir {self._workdir} ({free:.0f} MiB free) "
                f"while saving the checkpoint of step {step}; free space and launch the same "
                "command again to resume"
            ) from err

    def latest_progress(self) -> Progress | None:
        """The Progress of the newest complete checkpoint, without loading its arrays."""
        step = self._latest.latest_step()
        if step is None:
            return None
        restored = self._latest.restore(
            step, args=ocp.args.Composite(progress=ocp.args.JsonRestore())
        )
        return Progress.from_dict(restored["progress"])

    def restore_latest(self, like: TrainState) -> tuple[TrainState, Progress]:
        """The newest complete train state, laid out like `like` (shapes, dtypes, shardings)."""
        step = self._latest.latest_step()
        saved = self._latest.item_metadata(step)["state"].tree
        check_param_shapes(saved["params"], like.params, f"checkpoint of step {step}")
        restored = self._latest.restore(
            step,
            args=ocp.args.Composite(
                state=ocp.args.StandardRestore(_abstract(like)), progress=ocp.args.JsonRestore()
            ),
        )
        return restored["state"], Progress.from_dict(restored["progress"])

    def restore_best_params(self, like: dict) -> dict:
        """The parameters of the best validation loss, laid out like `like`."""
        step = self._best.latest_step()
        if step is None:
            raise RunError("no best checkpoint: training has not finished a validation pass")
        saved = self._best.item_metadata(step)["params"].tree
        check_param_shapes(saved, like, f"best checkpoint of step {step}")
        restored = self._best.restore(
            step, args=ocp.args.Composite(params=ocp.args.StandardRestore(_abstract(like)))
        )
        return restored["params"]

    def close(self) -> None:
        self._latest.close()
        self._best.close()
