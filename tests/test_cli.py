"""The command line as a user runs it: subprocesses, exit codes, one-line errors, no stray files."""

import json
import subprocess
import sys

import anndata as ad
import pytest

from tests.conftest import labels_with_pairs, make_adata


def cradle_jax(*args: str, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "cradle_jax", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=300,
    )


@pytest.fixture(scope="module")
def simulated(tmp_path_factory):
    out = tmp_path_factory.mktemp("sim") / "sim.h5ad"
    result = cradle_jax(
        "simulate",
        "--n_cells=1500",
        "--n_genes=200",
        "--n_perturbations=6",
        "--n_pairs=4",
        "--artifact_fraction=0.15",
        "--seed=3",
        f"--out={out}",
    )
    assert result.returncode == 0, result.stderr
    return out


def test_simulate_writes_data_and_truth(simulated):
    adata = ad.read_h5ad(simulated)
    assert adata.shape == (1500, 200)
    assert simulated.with_name("sim.truth.npz").exists()
    assert "perturbation" in adata.obs


def test_inspect_summarises_a_simulated_file(simulated):
    result = cradle_jax(
        "inspect", f"--data={simulated}", "--split=combinations", "--seed=0", "--json"
    )
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["cells"] == 1500
    assert summary["perturbations"] == 6
    assert summary["split_cells"]["test"] > 0
    assert set(summary["qc_thresholds"]["thresholds"]) == {"3", "4", "5"}
    by_t = summary["qc_fail_fraction_by_threshold"]
    # a larger MAD multiplier can only pass more cells
    assert by_t["3"]["any"] >= by_t["4"]["any"] >= by_t["5"]["any"]
    assert by_t["3"]["any"] == pytest.approx(summary["qc_fail_fraction"])


def test_inspect_prints_a_readable_report(simulated):
    result = cradle_jax("inspect", f"--data={simulated}")
    assert result.returncode == 0, result.stderr
    assert "1500 cells x 200 genes" in result.stdout
    assert "qc_pct_counts_mt" in result.stdout


def test_user_error_is_one_line_with_exit_code_2(tmp_path):
    path = tmp_path / "bad.h5ad"
    adata = make_adata(labels_with_pairs(10))
    adata.obs = adata.obs.rename(columns={"perturbation": "gene"})
    adata.write_h5ad(path)
    result = cradle_jax("inspect", f"--data={path}")
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0, result.stderr
    assert "perturbation column 'perturbation' not in obs" in result.stderr
    assert "Traceback" not in result.stderr


def test_failed_simulate_leaves_no_file(tmp_path):
    out = tmp_path / "never.h5ad"
    result = cradle_jax(
        "simulate", "--n_cells=100", "--n_perturbations=3", "--n_pairs=50", f"--out={out}"
    )
    assert result.returncode == 2
    assert "n_pairs" in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_unknown_subcommand_prints_usage():
    result = cradle_jax("fly")
    assert result.returncode == 2
    assert "simulate" in result.stderr


@pytest.mark.parametrize("args", [("train", "--help"), ("generate", "-h"), ("--help",)])
def test_help_exits_0_with_the_subcommands_page(args):
    result = cradle_jax(*args)
    assert result.returncode == 0, result.stderr
    if args[0] == "--help":
        assert all(name in result.stdout for name in ("simulate", "train", "aggregate"))
        return
    assert result.stdout.startswith(f"usage: cradle-jax {args[0]}")
    assert "example:" in result.stdout
    assert "--helpfull" in result.stdout
    assert "--workdir (default: none)" in result.stdout


def test_every_readme_subcommand_has_a_help_page_listing_its_own_flags():
    """Every `cradle-jax SUB` of the README, with purpose, each flag its module defines, and an
    example that uses only flags the page lists."""
    import re
    from pathlib import Path

    from absl import flags

    from cradle_jax.cli.help import PAGES, subcommand_help
    from cradle_jax.main import SUBCOMMANDS

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    in_readme = set(re.findall(r"^cradle-jax (\w+)", readme, flags=re.MULTILINE))
    assert in_readme <= set(SUBCOMMANDS) == set(PAGES)
    for command, (module, _, example) in PAGES.items():
        page = subcommand_help(command, SUBCOMMANDS[command])
        assert SUBCOMMANDS[command] in page
        own = flags.FLAGS.get_flags_for_module(f"cradle_jax.cli.{module}") if module else []
        for flag in own:
            assert f"--{flag.name} (default: " in page, (command, flag.name)
        for used in re.findall(r"--(\w+)", example):
            assert f"--{used} (default: " in page, (command, used)


def test_every_listed_subcommand_has_a_runner():
    from cradle_jax.main import RUNNERS, SUBCOMMANDS

    assert set(RUNNERS) == set(SUBCOMMANDS)
