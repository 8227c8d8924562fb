"""The default experiment config: every field of every section, with its default, written here once.

experiments/configs/*.py start from `default_config()` and override a few fields (the Flax
examples' pattern); `load_config_file` reads such a file the way `--config` does. The section
modules check these fields and turn them into typed objects (`models.config.ModelConfig`,
`train.config.resolve_loss_config`, `train.config.check_config`) but hold no default of their own.
"""

import importlib.util
from pathlib import Path

import ml_collections
from ml_collections import config_dict

# Not a field: the ℓ cells are generated at when no depth is asked for, and the simulator's true
# ATE is taken at, the paper's depth (docs/metrics.md#evaluation-scale); fixed so that ATEs
# compare across runs and with the paper (docs/metrics.md#library-size-caveat).
EVAL_LIBRARY = 1e4


def default_config() -> ml_collections.ConfigDict:
    """Every field with its default: seed, data, model, loss, train, eval."""
    config = ml_collections.ConfigDict()
    config.seed = 0  # the one seed of the run; --seed overrides it
    config.data = data_config()
    config.model = model_config()
    config.loss = loss_config()
    config.train = train_config()
    config.eval = eval_config()
    return config


def data_config() -> ml_collections.ConfigDict:
    """The input file, its labels, QC, splits and references (docs/data.md)."""
    c = ml_collections.ConfigDict()
    c.path = ""  # the .h5ad file
    c.layer = ""  # layer holding raw counts; "" = X
    c.backed = False  # read counts from disk by row blocks instead of loading them
    c.perturbation_key = "perturbation"  # obs column of the perturbation labels
    c.separator = "+"  # joins the targets of a combination, "A+B"
    c.control_label = "non-targeting"  # the label of control cells
    c.qc_threshold = 3  # MAD multiplier t (docs/data.md#qc-rules); thresholds for 3, 4, 5 kept
    c.qc_mode = "total"  # total: Q = 1 (fail any); each: one column per criterion
    # obs columns of QC metrics spelled differently, "metric=column,metric=column"
    # (docs/data.md#qc-metrics); unset (None), as in configs written before it, names none
    c.qc_columns = config_dict.placeholder(str)
    c.qc_doublets = True  # run Scrublet on the counts (docs/data.md#doublets)
    c.split = "random"  # random (64/16/20) | combinations (unseen pairs in test) | column
    c.split_column = "split"  # obs column naming each cell's split, for split = column
    c.split_seed = -1  # -1: the run seed
    c.frac_combinations_train = 0.75  # share of the combinations in train, split = combinations
    c.references = "same_treatment_fail"  # | opposite_label | none
    c.reference_group_key = ""  # obs column grouping references; "" = the treatment label
    c.n_reference_samples = 50  # rows drawn per cell (docs/data.md#counterfactual-references)
    return c


def model_config() -> ml_collections.ConfigDict:
    """Architecture and priors of `models.config.ModelConfig`, less the sizes read off the data.

    The defaults are the published values (docs/method.md#published-hyperparameters) except
    where docs/decisions.md says otherwise; which family reads which field: docs/method.md#families
    and the table in models/config.py; the baselines' fields: docs/method.md#baselines.
    """
    c = ml_collections.ConfigDict()
    c.name = "cradle"  # cradle | sams_vae | cvae | svae_plus (docs/method.md#families)
    c.n_latent = 200  # L, the latent dimensions
    c.n_particles = 5  # P, posterior samples of the global variables per step
    c.sum_mode = False  # decoder input z_b + z_p, not their concatenation (docs/method.md#networks)
    c.likelihood = "library_nb"  # normal | normal_fixed_variance | poisson | library_nb
    c.init = "torch"  # torch | flax: the networks' initialisation
    c.compute_dtype = "float32"  # float32 | bfloat16 (the networks' matrix products only)
    c.mask_prior_prob = 0.01  # prior probability that a mask entry is on
    c.embedding_prior_scale = 1.0  # std of the normal prior on the embeddings E
    # Masks start on (σ(3) = 0.95), not at the original's coin flip (0): from 0 every particle
    # uses a random half of the dims, the offset dᵀ(M⊙E) is noise the decoder learns to ignore
    # and the basal encoder absorbs the effects, which generation from the prior then misses
    # (docs/decisions.md#masks-start-on).
    c.mask_init_logits = 3.0
    c.gs_temperature = 1.0  # τ of the relaxed masks (docs/method.md#straight-through-masks)
    # CRADLE: QC-fail cells get their own NB dispersion, log θ + δ per gene, so the variable
    # damage of artifacts does not widen the dispersion that generated, artifact-free cells use
    # (docs/decisions.md#artifact-dispersion).
    c.artifact_dispersion = True
    # CRADLE in sum mode: the artifact enters the decoder as its own input block,
    # u = [z_b + z_p; a], so perturbations shift the cell state while damage stays off it
    # (docs/decisions.md#sum-mode).
    c.artifact_block = False
    # SVAE+: Beta(a, b) prior on the mask probabilities; b = 5 is the middle of the SAMS-VAE
    # paper's sweep {2, 5, 10} with a = 1.
    c.mask_beta_a = 1.0
    c.mask_beta_b = 5.0
    c.decoder_n_layers = 1  # the trunk has one more (docs/method.md#networks)
    c.decoder_n_hidden = 400
    # The decoder's trunk output gets a linear map of its input added, so the gene logits have a
    # linear path: latent offsets that add up (a pair's two singles) compose
    # (docs/decisions.md#decoder-linear-skip).
    c.decoder_linear_skip = True
    c.basal_encoder_n_layers = 1  # the cell encoder q(z | ·) of every family
    c.basal_encoder_n_hidden = 400
    c.embedding_encoder_n_layers = 4
    c.embedding_encoder_n_hidden = 400
    return c


def loss_config() -> ml_collections.ConfigDict:
    """α mode, cf-KL form and β (docs/method.md#class-weight, docs/method.md#counterfactual-kl)."""
    c = ml_collections.ConfigDict()
    c.alpha = "batch"  # batch | split | off | a number, e.g. "0.2"
    # What the α class weight scales: `cell` (the cell's whole ELBO term) | `reconstruction` (its
    # likelihood only, the original's: a β = 1/α VAE for pass cells whose basal posterior
    # collapses; docs/decisions.md#class-weight-scope).
    c.alpha_scope = "cell"
    # exact | reference | none. The original's form (`reference`: no 1/σ² on the mean term and
    # summed over cells, so worth β·B cells' ELBO) dominates the objective and collapses the basal
    # posterior (docs/decisions.md#cf-kl-exact).
    c.cf_kl = "exact"
    c.beta = 0.5  # weight of the counterfactual KL
    # Weight of the basal-dependence penalty: the mean of z_b in each perturbation and QC group
    # held at the prior's 0, so the encoder does not take up the effects
    # (objective.basal_dependence, docs/decisions.md#basal-independence).
    c.independence = 10.0
    # perturbation | perturbation_and_qc: CRADLE's QC groups held at 0 too (keeps artifact damage
    # out of z_b in sum mode; costs unseen-pair accuracy in concat mode)
    c.independence_groups = "perturbation"
    return c


def train_config() -> ml_collections.ConfigDict:
    """Optimiser and run control (docs/method.md#optimiser, docs/method.md#training); the
    published values are the defaults."""
    c = ml_collections.ConfigDict()
    c.batch_size = 512  # global batch; must divide by the device count
    c.learning_rate = 3e-4
    c.weight_decay = 1e-6  # coupled L2, added to the gradient before Adam
    c.mask_lr_scale = 10.0  # the mask logits' learning rate / learning_rate (see make_optimizer)
    c.dispersion_lr_scale = 1.0  # the NB log dispersions' learning rate / learning_rate
    # Start the NB decoder's gene-logit bias and log θ at the training QC-pass cells' moments
    # instead of a flat profile and θ = 1 (docs/decisions.md#likelihood-from-data)
    c.likelihood_from_data = True
    c.clip_norm = 100.0  # gradients clipped to this global norm
    c.max_epochs = 2000
    c.max_steps = 0  # stop after this many steps; 0 = no limit
    c.patience = 50  # early stopping on validation loss, in epochs; 0 = never stop early
    c.checkpoint_every_steps = 2000  # latest checkpoint also at every epoch end
    c.log_every_steps = 100  # the training loss goes to the metrics log every this many steps
    c.iwelbo_particles = 100  # predictive IWELBO on validation after training; 0 = skip
    c.iwelbo_batch_size = 128  # cells per IWELBO batch
    c.prefetch_batches = 2  # batches built on the host ahead of the device step; 0 = none
    c.input_workers = 4  # threads building host batches at once: backed reads overlap
    # auto | device | host: `device` keeps every cell on the device and gathers each batch
    # inside the step; `auto` does so when the data are in memory and fit in
    # device_memory_share of one device's memory (docs/decisions.md#device-resident-data)
    c.input_pipeline = "auto"
    c.device_memory_share = 0.5
    return c


def eval_config() -> ml_collections.ConfigDict:
    """Particles and cell counts of the evaluation (docs/metrics.md); the published values are
    the defaults."""
    c = ml_collections.ConfigDict()
    c.ate_particles = 2500  # generated cells per label, model ATE (docs/metrics.md#model-ate)
    c.ate_chunk = 128  # particles per compiled chunk
    c.ate_from_means = False  # decoder means, not sampled counts: lower variance, faster
    c.qc_cells = 100  # generated cells per label, QC pass rate (docs/metrics.md#qc-pass-rate)
    c.qc_doublets = True  # Scrublet on generated cells
    c.iwelbo_particles = 100  # test IWELBO (docs/metrics.md#iwelbo)
    c.iwelbo_batch_size = 128  # cells per IWELBO batch
    return c


def load_config_file(path: str | Path) -> ml_collections.ConfigDict:
    """`get_config()` of a config file, loaded by path."""
    path = Path(path)
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config()
