"""A sweep file that cannot be used: one named error line, exit status 2, nothing written."""

import pytest

from tests.reliability.harness import assert_user_error, run_cli, snapshot

BAD_SWEEPS = {
    "syntax_error": (
        "def get_sweep(:\n    return 1\n",
        ("failed to import", "SyntaxError", "line 1"),
    ),
    "raises_on_import": ("import not_a_module_anywhere\n", ("failed to import", "ModuleNotFound")),
    "get_sweep_raises": (
        "def get_sweep():\n    raise KeyError('seeds')\n",
        ("get_sweep() raised KeyError", "seeds"),
    ),
    "no_get_sweep": ("SWEEP = []\n", ("has no get_sweep()",)),
    "wrong_return": ("def get_sweep():\n    return 3\n", ("must return (base config path",)),
}


@pytest.mark.parametrize("name", sorted(BAD_SWEEPS))
def test_bad_sweep_file_is_one_line(name, tmp_path):
    text, expect = BAD_SWEEPS[name]
    sweep = tmp_path / "bad_sweep.py"
    sweep.write_text(text)
    before = snapshot(tmp_path)
    outcome = run_cli("sweep", f"--sweep={sweep}", f"--workdir={tmp_path / 'runs'}")
    assert_user_error(outcome, str(sweep), *expect)
    assert snapshot(tmp_path) == before
