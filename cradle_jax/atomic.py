"""Atomic file writes: a reader sees the old file or the whole new one, never a part."""

import contextlib
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
    try:
        fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=path.suffix)
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


def write_text(path: str | os.PathLike, text: str) -> None:
    """Write `text` to `path` atomically."""
    with replacing(path) as tmp:
        tmp.write_text(text)


def write_json(path: str | os.PathLike, value) -> None:
    """`value` as indented JSON, atomically."""
    write_text(path, json.dumps(value, indent=2, sort_keys=True) + "\n")
