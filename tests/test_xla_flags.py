"""The CPU XLA flags are added for the measured jaxlib only, and never over the user's own."""

from importlib.metadata import version

from cradle_jax import xla_flags

FLAG = "--xla_cpu_experimental_ynn_fusion_type"


def test_flags_are_added_for_the_measured_jaxlib(monkeypatch):
    monkeypatch.setattr(xla_flags, "CPU_FLAGS", {version("jaxlib"): (f"{FLAG}=-reduce",)})
    monkeypatch.setenv("XLA_FLAGS", "--xla_dump_to=/tmp/x")
    assert xla_flags.tune_cpu_backend() == (f"{FLAG}=-reduce",)
    assert xla_flags.os.environ["XLA_FLAGS"] == f"--xla_dump_to=/tmp/x {FLAG}=-reduce"
    assert xla_flags.tune_cpu_backend() == ()  # idempotent


def test_a_user_setting_of_the_flag_wins(monkeypatch):
    monkeypatch.setattr(xla_flags, "CPU_FLAGS", {version("jaxlib"): (f"{FLAG}=-reduce",)})
    monkeypatch.setenv("XLA_FLAGS", f"{FLAG}=+dot")
    assert xla_flags.tune_cpu_backend() == ()
    assert xla_flags.os.environ["XLA_FLAGS"] == f"{FLAG}=+dot"


def test_other_jaxlib_versions_get_nothing(monkeypatch):
    monkeypatch.setattr(xla_flags, "CPU_FLAGS", {"0.0.1": (f"{FLAG}=-reduce",)})
    monkeypatch.delenv("XLA_FLAGS", raising=False)
    assert xla_flags.tune_cpu_backend() == ()
    assert "XLA_FLAGS" not in xla_flags.os.environ
