"""Run `cradle-jax` inside the test process, and look at what a failed command left behind.

`run_cli` goes through the command line's own flag parser and `main()`, as the console script
does, minus the few seconds of JAX import a subprocess pays; its stderr and exit status are what
a user would see (`run_subprocess` is the real thing, for a few end-to-end checks). `snapshot`
records a folder's files so a test can check a failed command left none behind (nor changed any).
"""

import contextlib
import hashlib
import io
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from unittest import mock

from absl import flags

from cradle_jax import main as cli

FLAGS = flags.FLAGS


@dataclass(frozen=True)
class Outcome:
    """Exit status, stdout and stderr of one command."""

    code: int
    out: str
    err: str

    @property
    def error_lines(self) -> list[str]:
        """The stderr lines that report an error (warnings logged before it are not errors)."""
        return [line for line in self.err.splitlines() if "error" in line.lower()]


def run_cli(*args: str) -> Outcome:
    """`cradle-jax ARGS` in this process: flags parsed afresh, output and exit status captured.

    An exception other than SystemExit is a bug of the command line (a user would see a
    traceback) and propagates to fail the test.
    """
    argv = ["cradle-jax", *map(str, args)]
    # `--config.a.b=v` overrides are flags ml_collections defines while parsing; a new parse
    # must not find the last command's.
    for name in [name for name in FLAGS if name.startswith("config.")]:
        delattr(FLAGS, name)
    FLAGS.unparse_flags()
    out, err = io.StringIO(), io.StringIO()
    code = 0
    with (
        mock.patch.object(sys, "argv", argv),  # config_flags reads the overrides from sys.argv
        contextlib.redirect_stdout(out),
        contextlib.redirect_stderr(err),
    ):
        try:
            cli.main(cli.parse_flags(argv))
        except SystemExit as exit_:
            code = exit_.code
    return Outcome(code, out.getvalue(), err.getvalue())


def run_subprocess(*args: str) -> Outcome:
    """`python -m cradle_jax ARGS` in a new process, as a user runs it."""
    result = subprocess.run(
        [sys.executable, "-m", "cradle_jax", *map(str, args)],
        capture_output=True,
        text=True,
        env={**os.environ, "JAX_PLATFORMS": "cpu"},
        timeout=300,
    )
    return Outcome(result.returncode, result.stdout, result.stderr)


def snapshot(*folders: Path) -> dict[str, str]:
    """Every file and folder under `folders` (hidden ones included), files with a digest."""
    entries = {}
    for folder in folders:
        for path in sorted(Path(folder).rglob("*")):
            digest = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else "dir"
            entries[str(path)] = digest
    return entries


def assert_user_error(outcome: Outcome, *fragments: str) -> None:
    """Exit status 2 and exactly one error line, naming the problem (each of `fragments`)."""
    assert outcome.code == 2, (outcome.code, outcome.err[-2000:])
    assert "Traceback" not in outcome.err
    assert len(outcome.error_lines) == 1, outcome.err
    line = outcome.error_lines[0]
    assert line.startswith("cradle-jax"), line
    for fragment in fragments:
        assert fragment in line, (fragment, line)
