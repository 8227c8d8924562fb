"""Atomic file writes: a reader sees the old file or the whole new one, never a part."""

import contextlib
import glob
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def replacing(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `path` to write to; on success it is flushed to disk,
    given ordinary file permissions and renamed to `path`; on any error it is removed.

    The temporary name keeps `path`'s suffix, so writers that infer the format from it (or
    append one, as `numpy.savez` does) behave as they would for `path` itself. When the
    temporary file cannot be made (no such folder, no permission) the OSError names `path`.
    """
    path = Path(path)
    remove_stale_temporaries(path)
    try:
        fd, name = tempfile.mkstemp(
            dir=path.parent, prefix=f".{path.name}.{os.getpid()}-", suffix=path.suffix
        )
    except OSError as err:  # name the file asked for, not the temporary one
        raise type(err)(err.errno, err.strerror, str(path)) from err
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; results are ordinary files
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def remove_stale_temporaries(path: Path) -> None:
    """Remove the temporaries of `path` left by writers that no longer run (a kill -9).

    A temporary is named `.<name>.<pid>-<random><suffix>`; it is stale when no process of
    that id runs on this machine. Temporaries of a live writer are left alone.
    """
    prefix = f".{path.name}."
    for candidate in path.parent.glob(f"{glob.escape(prefix)}*-*{glob.escape(path.suffix)}"):
        pid_text = candidate.name[len(prefix) :].split("-", 1)[0]
        if pid_text.isdigit() and not _running(int(pid_text)):
            candidate.unlink(missing_ok=True)


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def write_text(path: str | os.PathLike, text: str) -> None:
    """Write `text` to `path` atomically."""
    with replacing(path) as tmp:
        tmp.write_text(text)


def write_json(path: str | os.PathLike, value) -> None:
    """`value` as indented JSON, atomically."""
    write_text(path, json.dumps(value, indent=2, sort_keys=True) + "\n")
