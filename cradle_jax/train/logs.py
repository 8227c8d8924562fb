"""The run's metrics on disk: `metrics.jsonl` (one JSON record per line) and TensorBoard events.

A resumed run first drops the records written after the checkpoint it resumes from (the killed
run may have logged steps that are now replayed), so each step appears once in the JSONL file,
and the TensorBoard writer purges the same steps from its view.
"""

import json
from pathlib import Path

from tensorboardX import SummaryWriter

from cradle_jax import atomic
from cradle_jax.train.state import current_term_name

JSONL_NAME = "metrics.jsonl"
TENSORBOARD_DIR = "tensorboard"


def _truncate_after(path: Path, step: int) -> None:
    """Atomically keep only the records of steps ≤ `step`, each loss term under today's name
    (a run resumed from before a rename then logs every epoch under the same names)."""
    if not path.exists():
        return
    records = [json.loads(line) for line in path.read_text().splitlines()]
    kept = [{current_term_name(k): v for k, v in r.items()} for r in records if r["step"] <= step]
    atomic.write_text(path, "".join(f"{json.dumps(record)}\n" for record in kept))


def loss_curve(workdir: str | Path, rows: int = 8) -> str:
    """A small table of train and validation loss at up to `rows` evenly spaced epochs."""
    path = Path(workdir) / JSONL_NAME
    records = [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []
    epochs = [r for r in records if "epoch" in r]
    if not epochs:
        return "no completed epoch yet"
    picks = sorted({round(i * (len(epochs) - 1) / max(rows - 1, 1)) for i in range(rows)})
    lines = [f"{'epoch':>6} {'step':>8} {'train loss':>12} {'val loss':>12}"]
    for r in (epochs[i] for i in picks):
        lines.append(
            f"{r['epoch']:>6} {r['step']:>8} {r['train/loss']:>12.4f} {r['val/loss']:>12.4f}"
        )
    return "\n".join(lines)


class MetricsLog:
    """Append-only metrics of one run; a no-op on every process but the first."""

    def __init__(self, workdir: str | Path, resume_step: int, enabled: bool = True) -> None:
        self._enabled = enabled
        if not enabled:
            return
        self._path = Path(workdir) / JSONL_NAME
        _truncate_after(self._path, resume_step)
        purge_step = resume_step + 1 if resume_step else None
        self._writer = SummaryWriter(str(Path(workdir) / TENSORBOARD_DIR), purge_step=purge_step)

    def write(self, step: int, values: dict[str, float]) -> None:
        """One record {"step": step, **values}; keys like `train/loss` become TensorBoard tags."""
        if not self._enabled:
            return
        with self._path.open("a") as f:
            f.write(json.dumps({"step": step, **values}) + "\n")
        for tag, value in values.items():
            self._writer.add_scalar(tag, value, step)

    def close(self) -> None:
        if self._enabled:
            self._writer.close()
