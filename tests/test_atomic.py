"""Atomic writes leave the old file or the new one, and no temporaries of dead writers."""

import os
import subprocess
import sys

import pytest

from cradle_jax import atomic


def finished_pid() -> int:
    """The id of a process that has exited (so no process of that id runs, barring reuse)."""
    process = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                             capture_output=True, text=True, check=True)  # fmt: skip
    return int(process.stdout)


def test_a_killed_writers_temporary_is_removed_by_the_next_write(tmp_path):
    target = tmp_path / "model.cradle"
    stale = tmp_path / f".model.cradle.{finished_pid()}-abcd.cradle"
    live = tmp_path / f".model.cradle.{os.getpid()}-efgh.cradle"
    other_target = tmp_path / f".other.cradle.{finished_pid()}-ijkl.cradle"
    for path in (stale, live, other_target):
        path.write_text("partial")
    atomic.write_text(target, "whole")
    assert target.read_text() == "whole"
    assert not stale.exists()
    assert live.exists()  # a writer that still runs keeps its temporary
    assert other_target.exists()  # another target's temporaries are not ours to remove
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [target.name, live.name, other_target.name]
    )


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "results.json"
    atomic.write_text(target, "old")

    def write_then_fail() -> None:
        with atomic.replacing(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed mid-write")

    with pytest.raises(RuntimeError):
        write_then_fail()
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["results.json"]
