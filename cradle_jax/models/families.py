"""The four model families behind `model.name`, seen through one interface
(docs/method.md#families).

Every family is a pair of NumPyro programs with the same signature, `model(batch, stats,
weights, cfg)` and `guide(batch, stats, weights, cfg)`, a `global_guide(cfg, weights)` whose
sample sites are the family's global latent variables, and a per-cell latent site named
`z_basal` whose posterior parameters the guide records as `z_loc` and `z_scale`. The trainer,
the predictive IWELBO, generation, encoding and export work on this interface alone.
"""

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from cradle_jax.data.errors import DataError
from cradle_jax.models import cradle, cvae, sams_vae, svae_plus
from cradle_jax.models.config import ModelConfig


@dataclass(frozen=True)
class Family:
    """One model family.

    artifact_path: it learns the artifact embedding A from the QC labels, so α mixing
      (docs/method.md#class-weight) and the counterfactual KL (docs/method.md#counterfactual-kl)
      apply; the others ignore QC labels.
    combinations: it can model cells with several perturbations (multi-hot dosage rows).
    basal_free_of_perturbation: its prior says z ⊥ d (the perturbation acts beside z, in the
      decoder's input), so the basal-dependence penalty applies; SVAE+ puts the perturbation's
      shift into the prior of z itself, where the penalty would undo it.
    """

    name: str
    model: Callable
    guide: Callable
    global_guide: Callable
    global_sites: tuple[str, ...]
    artifact_path: bool
    combinations: bool
    basal_free_of_perturbation: bool


def _family(
    module, *, artifact_path: bool, combinations: bool, basal_free_of_perturbation: bool = True
) -> Family:
    """The Family of a model module: its `model`, `guide`, `global_guide` and GLOBAL_SITES."""
    return Family(
        name=module.__name__.rsplit(".", 1)[-1],
        model=module.model,
        guide=module.guide,
        global_guide=module.global_guide,
        global_sites=module.GLOBAL_SITES,
        artifact_path=artifact_path,
        combinations=combinations,
        basal_free_of_perturbation=basal_free_of_perturbation,
    )


FAMILIES = {
    family.name: family
    for family in (
        _family(cradle, artifact_path=True, combinations=True),
        _family(sams_vae, artifact_path=False, combinations=True),
        _family(cvae, artifact_path=False, combinations=True),
        _family(
            svae_plus, artifact_path=False, combinations=False, basal_free_of_perturbation=False
        ),
    )
}


def family_of(cfg: ModelConfig) -> Family:
    return FAMILIES[cfg.name]


def check_dosage(cfg: ModelConfig, dosage, labels) -> None:
    """Raise a DataError when `cfg`'s family cannot model these cells: combinations given to a
    family of single perturbations (SVAE+). `dosage` (n, T) dense or sparse, `labels` (n,)."""
    if family_of(cfg).combinations:
        return
    members = np.asarray((dosage != 0).sum(axis=1)).ravel()
    combinations = sorted({str(label) for label in np.asarray(labels)[members > 1]})
    if combinations:
        raise DataError(
            f"model.name={cfg.name} models one perturbation per cell, but got "
            f"{len(combinations)} combination(s) (e.g. {combinations[0]!r}); use cradle, "
            "sams_vae or cvae for combinations"
        )
