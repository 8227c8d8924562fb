"""Reading a sweep file: run names, override checks, `--set` values."""

import pytest
from absl import flags

from cradle_jax.cli.sweep import parse_set
from cradle_jax.config import default_config
from cradle_jax.sweep.spec import MAX_NAME, SweepError, apply_overrides, load_sweep, run_name
from tests.sweep.conftest import cradle_jax, write_sweep_file


def test_run_names_are_readable_sorted_and_independent_of_key_order():
    assert run_name({"seed": 1, "model.name": "sams_vae"}) == "model.name=sams_vae,seed=1"
    assert run_name({"model.name": "sams_vae", "seed": 1}) == "model.name=sams_vae,seed=1"
    assert run_name({"data.backed": True, "loss.beta": 1e-05}) == "data.backed=true,loss.beta=1e-05"
    assert run_name({}) == "base"


def test_unsafe_or_long_names_get_a_hash_and_stay_distinct():
    slash, space = run_name({"data.path": "a/b.h5ad"}), run_name({"data.path": "a b.h5ad"})
    assert slash.startswith("data.path=a_b.h5ad-")
    assert space.startswith("data.path=a_b.h5ad-")
    assert slash != space
    long_a, long_b = run_name({"data.path": "x" * 200}), run_name({"data.path": "x" * 201})
    assert len(long_a) <= MAX_NAME
    assert long_a != long_b
    for name in (slash, space, long_a):
        assert not set(name) & set("/ ")


def test_an_unknown_field_is_an_error_naming_it_and_its_run(tmp_path):
    path = write_sweep_file(tmp_path, {"seed": [0, 1]})
    path.write_text(path.read_text().replace("product(", "[{'model.n_latnt': 3}] + product("))
    with pytest.raises(SweepError, match=r"run 1 \(model.n_latnt=3\): unknown config field "
                       r"'model.n_latnt'; did you mean 'model.n_latent'\?"):  # fmt: skip
        load_sweep(path)


def test_a_value_of_the_wrong_type_or_a_field_set_twice_is_an_error(tmp_path):
    path = write_sweep_file(tmp_path, {"data.qc_threshold": [3.5]})
    with pytest.raises(SweepError, match=r"3.5 \(float\) does not fit the field's type \(int\)"):
        load_sweep(path)
    path = write_sweep_file(tmp_path, {"seed": [0, 1]})
    with pytest.raises(SweepError, match="seed set both by --set and by the sweep"):
        load_sweep(path, {"seed": 3})
    with pytest.raises(SweepError, match=r"--set unknown config field 'train\.epochs'"):
        load_sweep(path, {"train.epochs": 3})


def test_set_values_are_parsed_by_the_fields_type():
    values = parse_set(
        ["data.qc_threshold=4", "loss.beta=0.1", "data.backed=true", "data.path=a=b.h5ad"],
        default_config(),
    )
    assert values == {
        "data.qc_threshold": 4, "loss.beta": 0.1, "data.backed": True, "data.path": "a=b.h5ad"
    }  # fmt: skip
    assert isinstance(values["loss.beta"], float)
    with pytest.raises(flags.ValidationError, match=r"qc_threshold=four: expected an int"):
        parse_set(["data.qc_threshold=four"], default_config())
    with pytest.raises(SweepError, match=r"did you mean 'data\.path'"):
        parse_set(["data.pth=x.h5ad"], default_config())


def test_an_unset_text_field_takes_text():
    values = parse_set(["data.qc_columns=UMI_count=total_counts"], default_config())
    assert values == {"data.qc_columns": "UMI_count=total_counts"}
    config = apply_overrides(default_config(), values)
    assert config.data.qc_columns == "UMI_count=total_counts"


def test_the_command_refuses_a_bad_sweep_before_any_run_starts(tmp_path):
    path = write_sweep_file(tmp_path, {"seed": [0, 1]})
    path.write_text(path.read_text().replace("product(", "product([{'loss.bta': 0.1}], "))
    workdir = tmp_path / "sweep"
    process = cradle_jax("sweep", f"--sweep={path}", f"--workdir={workdir}")
    _, err = process.communicate(timeout=300)
    assert process.returncode == 2
    assert err.strip().count("\n") == 0, err
    assert "unknown config field 'loss.bta'; did you mean 'loss.beta'?" in err
    assert not workdir.exists()
