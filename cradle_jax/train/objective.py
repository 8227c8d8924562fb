"""The training objective as a pure function (params, batch, key) → (loss, aux).

Its terms are described in docs/method.md#objective. One function for the four model families
(`model.name`, docs/method.md#families). The ELBO part is NumPyro's: `get_importance_trace`
traces the guide, replays the model on its samples and gives every sample site its log-density
with the scale and mask its handlers set; each contributes log p − log q (equal to
`Trace_ELBO().loss` for the same key, tested). Terms are kept per site so they can be logged.
Only CRADLE's counterfactual KL (docs/method.md#counterfactual-kl) is written by hand; α mixing
and the cf term apply to the families with an artifact path (CRADLE) and are ignored by the
others, which use no QC labels.
"""

from dataclasses import dataclass

import jax
import jax.numpy as jnp
from numpyro import handlers
from numpyro.infer.util import get_importance_trace

from cradle_jax.models import cradle
from cradle_jax.models.config import ModelConfig
from cradle_jax.models.families import Family, family_of
from cradle_jax.models.sites import SiteWeights

ALPHA_MODES = ("batch", "split", "off")
ALPHA_SCOPES = ("reconstruction", "cell")
CF_KL_FORMS = ("reference", "exact", "none")
INDEPENDENCE_GROUPS = ("perturbation", "perturbation_and_qc")


@dataclass(frozen=True)
class LossConfig:
    """α mode (`batch`, `split`, `off` or a float), what the α class weight scales, cf-KL form
    and its weight β. Every field is required: the defaults live in the config
    (`cradle_jax.config.loss_config`), read by `resolve_loss_config`.

    alpha_scope `reconstruction` (the original): the class weight multiplies each cell's
    likelihood only, so pass cells (weight α, the fail share) keep their full z_b KL, a β-VAE
    with β = 1/α that collapses the basal posterior. `cell`: it multiplies the cell's whole ELBO
    term (likelihood and z_b KL), normalised to mean 1 over the batch's cells, so the classes
    stay balanced without tilting any cell's likelihood against its prior
    (docs/decisions.md#class-weight-scope).

    `independence` weighs the penalty `basal_dependence` over the perturbation groups, and with
    `independence_groups` = `perturbation_and_qc` over CRADLE's QC groups too
    (docs/decisions.md#basal-independence); 0 leaves it out.
    """

    alpha: str | float
    cf_kl: str
    beta: float
    alpha_scope: str
    independence: float
    independence_groups: str

    def __post_init__(self) -> None:
        if not isinstance(self.alpha, float | int) and self.alpha not in ALPHA_MODES:
            raise ValueError(f"loss.alpha must be one of {ALPHA_MODES} or a number: {self.alpha!r}")
        if self.cf_kl not in CF_KL_FORMS:
            raise ValueError(f"loss.cf_kl must be one of {CF_KL_FORMS}, got {self.cf_kl!r}")
        if self.alpha_scope not in ALPHA_SCOPES:
            raise ValueError(
                f"loss.alpha_scope must be one of {ALPHA_SCOPES}, got {self.alpha_scope!r}"
            )
        if not self.beta >= 0:
            raise ValueError(f"loss.beta (the cf-KL weight) must be >= 0, got {self.beta}")
        if not self.independence >= 0:
            raise ValueError(f"loss.independence must be >= 0, got {self.independence}")
        if self.independence_groups not in INDEPENDENCE_GROUPS:
            raise ValueError(
                f"loss.independence_groups must be one of {INDEPENDENCE_GROUPS}, "
                f"got {self.independence_groups!r}"
            )


def class_weight(
    batch: dict, stats: dict, loss_cfg: LossConfig
) -> tuple[jax.Array | None, jax.Array]:
    """α and the per-cell reconstruction weight α(1−c̃) + (1−α)c̃, c̃ = fail-any
    (docs/method.md#class-weight).

    `batch`: α = fail fraction of the batch's real cells (0 when it has no fail cell, so its pass
    cells carry no reconstruction weight, as in the original); `split`: the training split's
    fail fraction (`stats["fail_fraction"]`); a number: fixed α; `off`: weight 1 for every cell
    and no α (None).
    """
    failed = jnp.max(batch["qc"], axis=-1) > 0
    if loss_cfg.alpha == "off":
        return None, jnp.ones_like(batch["weight"])
    if loss_cfg.alpha == "batch":
        n = jnp.maximum(batch["weight"].sum(), 1.0)
        alpha = jnp.sum(batch["weight"] * failed) / n
    elif loss_cfg.alpha == "split":
        alpha = jnp.asarray(stats["fail_fraction"], jnp.float32)
    else:
        alpha = jnp.asarray(loss_cfg.alpha, jnp.float32)
    return alpha, jnp.where(failed, 1.0 - alpha, alpha)


def site_weights(
    batch: dict, stats: dict, cfg: ModelConfig, loss_cfg: LossConfig
) -> tuple[SiteWeights, jax.Array | None]:
    """The plate weights W, V summed over the batch's cells (docs/method.md#plate-reweighting),
    and α; all / (P · real cells).

    Families without an artifact path have no α: every cell is reconstructed with weight 1.
    """
    w = batch["weight"]
    norm = cfg.n_particles * jnp.maximum(w.sum(), 1.0)

    def per_column(indicator: jax.Array, n_obs: jax.Array) -> jax.Array:
        counts = jnp.sum(indicator * w[:, None], axis=0)
        return jnp.where(n_obs > 0, counts / jnp.where(n_obs > 0, n_obs, 1.0), 0.0) / norm

    if family_of(cfg).artifact_path:
        alpha, gamma = class_weight(batch, stats, loss_cfg)
    else:
        alpha, gamma = None, jnp.ones_like(w)
    cell = w
    if loss_cfg.alpha_scope == "cell" and alpha is not None:
        gamma = gamma * w.sum() / jnp.maximum(jnp.sum(w * gamma), 1e-12)
        cell = w * gamma
    weights = SiteWeights(
        perturbation=per_column(batch["D"] != 0, stats["obs_dosage"]),
        qc=per_column(batch["qc"] != 0, stats["obs_qc"]),
        cell=cell / norm,
        reconstruction=w * gamma / norm,
    )
    return weights, alpha


def _site_log_prob(site: dict) -> jax.Array:
    """A site's log-density summed, with its handlers' mask (inside `fn`) and scale applied."""
    return jnp.sum(site["log_prob"])


def _traces(
    params: dict,
    batch: dict,
    stats: dict,
    weights: SiteWeights,
    cfg: ModelConfig,
    key: jax.Array,
    counterfactual: bool = False,
):
    """Guide trace and the model replayed on it, every sample site with its scaled `log_prob`
    (NumPyro's `get_importance_trace`); keys split as NumPyro's Trace_ELBO does.

    `params` are substituted inside each seed handler rather than by `get_importance_trace`
    outside it: a sample site given a value (the global samples of `predictive_iwelbo`) then
    takes no key from the seed handler; outside, it would, and every later site would draw
    other values. Gradients stop at guide sites without a reparametrised sampler; every guide
    site has one (the mask's straight-through Bernoulli too). `counterfactual` traces CRADLE's
    guide that also records the counterfactual basal posterior."""
    family = family_of(cfg)
    model_key, guide_key = jax.random.split(key)
    guide = cradle.guide_with_counterfactual if counterfactual else family.guide
    model_trace, guide_trace = get_importance_trace(
        handlers.seed(handlers.substitute(family.model, data=params), model_key),
        handlers.seed(handlers.substitute(guide, data=params), guide_key),
        (batch, stats, weights, cfg),
        {},
        {},
    )
    return guide_trace, model_trace


def gaussian_cf_kl(
    loc_ref: jax.Array, scale_ref: jax.Array, loc_cf: jax.Array, scale_cf: jax.Array, form: str
) -> jax.Array:
    """Per element (P, B, L): `reference` = the original's κ (no 1/σ₂² on the mean term, so not
    a true KL); `exact` = the Gaussian KL (docs/method.md#counterfactual-kl)."""
    ratio = (scale_ref / scale_cf) ** 2
    mean_term = (loc_ref - loc_cf) ** 2
    if form == "exact":
        mean_term = mean_term / scale_cf**2
    return 0.5 * (ratio - 1.0 - jnp.log(ratio) + mean_term)


def counterfactual_kl(
    params: dict, batch: dict, stats: dict, weights, guide_trace, cfg, form: str, key: jax.Array
) -> jax.Array:
    """K: the reference cell's basal posterior vs this cell's counterfactual posterior
    (docs/method.md#counterfactual-kl).

    The reference pass is an independent guide call on (x^cf, d, 1−c) with fresh global samples,
    as in the original (reusing the factual ones would lower its noise). `reference`:
    Σ_l (1/P) Σ_p Σ_{i with a reference} κ; `exact`: the Gaussian KL summed over L, averaged
    over particles and over cells with a reference.
    """
    reference = {**batch, "X": batch["reference_X"], "qc": 1.0 - batch["qc"]}
    ref_trace = handlers.trace(
        handlers.seed(handlers.substitute(cradle.guide, data=params), key)
    ).get_trace(reference, stats, weights, cfg)
    kl = gaussian_cf_kl(
        ref_trace["z_loc"]["value"],
        ref_trace["z_scale"]["value"],
        guide_trace["z_cf_loc"]["value"],
        guide_trace["z_cf_scale"]["value"],
        form,
    )
    per_cell = kl.sum(axis=-1).mean(axis=0)  # (B,)
    has_reference = (batch["reference_X"].sum(axis=-1) != 0) & (batch["weight"] > 0)
    total = jnp.sum(jnp.where(has_reference, per_cell, 0.0))
    if form == "exact":
        return total / jnp.maximum(has_reference.sum(), 1)
    return total


def basal_dependence(z_loc: jax.Array, batch: dict, qc_groups: bool) -> jax.Array:
    """How much the basal posterior means depend on the perturbation (and the QC status):
    Σ_g (n_g/n) ‖μ_g‖².

    Groups g are the perturbation columns of D (a pair's cell is in both), the controls (no
    perturbation) and, with `qc_groups`, the QC columns (cells failing each criterion) and the
    cells passing every criterion; μ_g is the mean of z_loc over group g, whose square norm is
    estimated without bias by the U-statistic (‖Σ_i z_i‖² − Σ_i ‖z_i‖²) / (n_g (n_g − 1)), so
    the spread of z_b within a group is not penalised, only a shift of its mean. The model says
    z_b ⊥ d (CRADLE: z_b ⊥ (d, c)) with z_b ~ N(0, I), so every group's mean is 0; averaged
    over particles, a scalar. A family without an artifact path has only z_b to explain an
    artifact with, so its QC groups are not held at 0.
    """
    w = batch["weight"]
    indicators = [batch["D"] != 0, jnp.all(batch["D"] == 0, axis=-1, keepdims=True)]
    if qc_groups:
        indicators += [batch["qc"] != 0, jnp.all(batch["qc"] == 0, axis=-1, keepdims=True)]
    groups = jnp.concatenate(indicators, axis=-1) * w[:, None]  # (B, number of groups)
    sums = jnp.einsum("bg,pbl->pgl", groups, z_loc)
    squares = jnp.einsum("bg,pb->pg", groups, jnp.sum(z_loc**2, axis=-1))
    n = jnp.sum(groups, axis=0)
    pairs = n * (n - 1.0)
    mean_square = (jnp.sum(sums**2, axis=-1) - squares) / jnp.where(pairs > 0, pairs, 1.0)
    share = jnp.where(pairs > 0, n, 0.0) / jnp.maximum(jnp.sum(w), 1.0)
    return jnp.mean(jnp.sum(share * mean_square, axis=-1))


def uses_cf_kl(family: Family, loss_cfg: LossConfig) -> bool:
    return family.artifact_path and loss_cfg.cf_kl != "none"


def training_loss(
    params: dict,
    batch: dict,
    stats: dict,
    key: jax.Array,
    cfg: ModelConfig,
    loss_cfg: LossConfig,
) -> tuple[jax.Array, dict]:
    """−ELBO (mean over real cells and particles) + β·K, and every term for logging
    (docs/method.md#objective).

    The aux terms: `loss_term_<site>` per sample site, `counterfactual_kl` (β·K; CRADLE only),
    `negative_elbo` and, with α mixing, `alpha`.
    """
    family = family_of(cfg)
    weights, alpha = site_weights(batch, stats, cfg, loss_cfg)
    elbo_key, ref_key = jax.random.split(key)
    with_cf = uses_cf_kl(family, loss_cfg)
    guide_trace, model_trace = _traces(
        params, batch, stats, weights, cfg, elbo_key, counterfactual=with_cf
    )
    aux = {"loss_term_reconstruction": -_site_log_prob(model_trace["x"])}
    for name in (*family.global_sites, "z_basal"):
        term = _site_log_prob(model_trace[name]) - _site_log_prob(guide_trace[name])
        aux[f"loss_term_{name}"] = -term
    negative_elbo = sum(aux.values())
    loss = negative_elbo
    if family.artifact_path:
        cf = jnp.zeros(())
        if with_cf:
            cf = counterfactual_kl(
                params, batch, stats, weights, guide_trace, cfg, loss_cfg.cf_kl, ref_key
            )
        aux["counterfactual_kl"] = loss_cfg.beta * cf
        loss = negative_elbo + loss_cfg.beta * cf
    if loss_cfg.independence > 0 and family.basal_free_of_perturbation:
        z_loc = guide_trace["z_loc"]["value"]
        qc_groups = family.artifact_path and loss_cfg.independence_groups != "perturbation"
        dependence = basal_dependence(z_loc, batch, qc_groups=qc_groups)
        aux["basal_dependence"] = loss_cfg.independence * dependence
        loss = loss + loss_cfg.independence * dependence
    aux["negative_elbo"] = negative_elbo
    if alpha is not None:
        aux["alpha"] = alpha
    return loss, aux


def placeholder_inputs(cfg: ModelConfig) -> tuple[dict, dict]:
    """A one-cell batch and statistics of the shapes `cfg` needs: parameters depend only on
    the key and the shapes, so these initialise them without touching any data."""
    G, T, Q = cfg.n_genes, cfg.n_perturbations, cfg.n_qc
    batch = {
        "X": jnp.zeros((1, G)),
        "D": jnp.zeros((1, T)),
        "qc": jnp.zeros((1, Q)),
        "reference_X": jnp.zeros((1, G)),
        "library_size": jnp.zeros((1,)),
        "weight": jnp.ones((1,)),
    }
    stats = {
        "obs_dosage": jnp.ones(T),
        "obs_qc": jnp.ones(Q),
        "norm_mean": jnp.zeros(G),
        "norm_std": jnp.ones(G),
        "fail_fraction": jnp.asarray(0.5),
    }
    return batch, stats


def init_params(key: jax.Array, batch: dict, stats: dict, cfg: ModelConfig) -> dict:
    """Initial parameters of guide and model (flax modules and free parameters) for `cfg`."""
    family = family_of(cfg)
    unweighted = LossConfig("off", "none", 0.0, "cell", 0.0, "perturbation")  # shapes only
    weights, _ = site_weights(batch, stats, cfg, unweighted)
    guide_key, model_key = jax.random.split(key)
    params = {}
    for program, program_key in ((family.guide, guide_key), (family.model, model_key)):
        trace = handlers.trace(handlers.seed(program, program_key)).get_trace(
            batch, stats, weights, cfg
        )
        params.update({k: s["value"] for k, s in trace.items() if s["type"] == "param"})
    return params


def sample_global_posterior(params: dict, key: jax.Array, cfg: ModelConfig) -> dict:
    """P samples of the family's global variables from the guide, each (P, ·, L); for CRADLE
    {mask, E, artifact_E}, for the cVAE none."""
    family = family_of(cfg)
    unit = SiteWeights.unweighted(cfg, jnp.ones(1))
    trace = handlers.trace(
        handlers.seed(handlers.substitute(family.global_guide, data=params), key)
    ).get_trace(cfg, unit)
    return {name: trace[name]["value"] for name in family.global_sites}


def predictive_iwelbo(
    params: dict, global_samples: dict, batch: dict, stats: dict, key: jax.Array, cfg: ModelConfig
) -> jax.Array:
    """Per-cell predictive IWELBO (docs/metrics.md#iwelbo), (B,); 0 for padding cells.

    The global samples (from `sample_global_posterior`, P = cfg.n_particles) are shared by all
    batches; per particle w = log p(x | z_b, ...) + log p(z_b) − log q(z_b) on the cell's own
    decoder path, with no α and no prior on the globals; IWELBO = logsumexp_p w − log P.
    """
    w = batch["weight"]
    unit = SiteWeights.unweighted(cfg, w)
    guide_trace, model_trace = _traces({**params, **global_samples}, batch, stats, unit, cfg, key)

    def log_prob(site: dict) -> jax.Array:
        return site["fn"].log_prob(site["value"])  # (P, B), unscaled; padding masked to 0

    log_w = (
        log_prob(model_trace["x"])
        + log_prob(model_trace["z_basal"])
        - log_prob(guide_trace["z_basal"])
    )
    iwelbo = jax.nn.logsumexp(log_w, axis=0) - jnp.log(cfg.n_particles)
    return jnp.where(w > 0, iwelbo, 0.0)
