"""The simulator's parameters, gene sets and label conventions, validated on construction."""

from dataclasses import asdict, dataclass, fields

import numpy as np

from cradle_jax.config import data_config
from cradle_jax.data.errors import DataError

# Simulated files carry the labels the default data config reads, so they load without flags.
_READ_BY = data_config()
PERTURBATION_KEY = _READ_BY.perturbation_key
CONTROL_LABEL = _READ_BY.control_label
SEPARATOR = _READ_BY.separator
ARTIFACT_NAMES: tuple[str, ...] = ("none", "damaged", "empty", "doublet")
NONE, DAMAGED, EMPTY, DOUBLET = range(4)

MT_GENES = (
    "MT-ND1", "MT-ND2", "MT-CO1", "MT-CO2", "MT-ATP8", "MT-ATP6", "MT-CO3",
    "MT-ND3", "MT-ND4L", "MT-ND4", "MT-ND5", "MT-ND6", "MT-CYB",
)  # fmt: skip
RIBO_GENES = (
    "RPL3", "RPL4", "RPL5", "RPL6", "RPL7", "RPL7A", "RPL8", "RPL9", "RPL10", "RPL10A",
    "RPL11", "RPL12", "RPL13", "RPL13A", "RPL14", "RPL15", "RPL17", "RPL18", "RPL18A", "RPL19",
    "RPS2", "RPS3", "RPS3A", "RPS4X", "RPS5", "RPS6", "RPS7", "RPS8", "RPS9", "RPS10",
    "RPS11", "RPS12", "RPS13", "RPS14", "RPS15", "RPS15A", "RPS16", "RPS18", "RPS19", "RPS20",
)  # fmt: skip
HB_GENES = ("HBA1", "HBA2", "HBB", "HBD", "HBG1", "HBG2")
MIN_OTHER_GENES = 41
MIN_GENES = len(MT_GENES) + len(RIBO_GENES) + len(HB_GENES) + MIN_OTHER_GENES  # 100


@dataclass(frozen=True)
class SimulationConfig:
    """All knobs of the simulator; validated on construction (DataError naming the field)."""

    n_cells: int = 10_000
    n_genes: int = 1_000
    n_perturbations: int = 20  # singles T
    n_pairs: int = 10
    n_latent: int = 10
    control_fraction: float = 0.1
    artifact_fraction: float = 0.1
    artifact_perturbation_dependence: float = 3.0  # damaged-rate multiplier for toxic singles
    interaction_fraction: float = 0.3  # share of pairs with a planted non-additive interaction
    seed: int = 0
    toxic_fraction: float = 0.25  # share of singles that are toxic (at least one if > 0)
    damaged_share: float = 0.5  # the artifact types' shares of artifact_fraction (sum to 1)
    empty_share: float = 0.25
    doublet_share: float = 0.25
    effect_size: float = 2.0  # |m ⊙ e| on an active dim is effect_size · U(0.75, 1.5)
    max_mask_dims: int = 3  # a single's mask touches U{1, ..., max_mask_dims} latent dims
    loading_scale: float = 0.4  # std of a non-zero decoder loading
    loading_density: float = 0.1  # share of genes loading on each latent dim
    decoder_nonlinearity: float = 0.5  # κ, weight of the tanh hidden layer
    mt_share: float = 0.05  # expected share of counts per gene class in a clean cell
    ribo_share: float = 0.2
    hb_share: float = 5e-6
    expression_spread: float = 1.5  # std of log baseline expression across other genes
    theta_median: float = 8.0  # NB inverse dispersion; MT/ribo genes get 4x (less noisy)
    library_median: float = 3000.0
    library_sigma: float = 0.35
    damaged_keep: tuple[float, float] = (0.05, 0.3)  # range of a damaged cell's non-MT kept share
    empty_library_fraction: float = 0.05  # median depth of an empty droplet / library_median
    ate_cells: int = 2000  # Monte Carlo clean cells per label for the true ATE
    block_size: int = 5000  # cells per generated row block

    def __post_init__(self) -> None:
        if isinstance(self.damaged_keep, list):  # as read back from JSON
            object.__setattr__(self, "damaged_keep", tuple(self.damaged_keep))
        self.validate()

    def validate(self) -> None:
        """Raise DataError naming the first field that cannot be simulated.

        The checks run in a fixed order (types, sizes, fractions, magnitudes, cells per label),
        so a config with several bad fields always names the same one.
        """
        self._check_types()
        self._check_sizes()
        self._check_fractions()
        self._check_magnitudes()
        self._check_cells_per_label()

    def _check_types(self) -> None:
        """int fields hold integers (not bools), float fields finite numbers."""
        for f in fields(self):
            value = getattr(self, f.name)
            if f.type is int and (isinstance(value, bool) or not isinstance(value, int)):
                raise DataError(f"simulation config: {f.name} must be an integer, got {value!r}")
            if f.type is float and (
                isinstance(value, bool)
                or not isinstance(value, int | float)
                or not np.isfinite(value)
            ):
                raise DataError(
                    f"simulation config: {f.name} must be a finite number, got {value!r}"
                )

    def _check_sizes(self) -> None:
        """Counts of cells, perturbations, pairs, latent dims and genes, and the seed: the pairs
        must be distinct pairs of the singles, the genes hold every QC gene set."""
        for name in (
            "n_cells",
            "n_perturbations",
            "n_latent",
            "max_mask_dims",
            "ate_cells",
            "block_size",
        ):
            _require(getattr(self, name) >= 1, name, "must be >= 1")
        _require(self.n_pairs >= 0, "n_pairs", "must be >= 0")
        _require(self.seed >= 0, "seed", "must be >= 0")
        max_pairs = self.n_perturbations * (self.n_perturbations - 1) // 2
        _require(
            self.n_pairs <= max_pairs,
            "n_pairs",
            f"exceeds the {max_pairs} distinct pairs of n_perturbations={self.n_perturbations}",
        )
        _require(
            self.n_genes >= MIN_GENES,
            "n_genes",
            f"is too small: need >= {MIN_GENES} ({len(MT_GENES)} MT-, {len(RIBO_GENES)} "
            f"RPL/RPS, {len(HB_GENES)} HB genes and {MIN_OTHER_GENES} others)",
        )

    def _check_fractions(self) -> None:
        """The shares of control, artifact, toxic and interacting cells or labels lie in their
        ranges; the artifact types' shares sum to 1; the toxic multiplier is positive."""
        _require(0 < self.control_fraction < 1, "control_fraction", "must lie in (0, 1)")
        _require(0 <= self.artifact_fraction < 1, "artifact_fraction", "must lie in [0, 1)")
        for name in ("toxic_fraction", "interaction_fraction"):
            _require(0 <= getattr(self, name) <= 1, name, "must lie in [0, 1]")
        shares = (self.damaged_share, self.empty_share, self.doublet_share)
        _require(min(shares) >= 0, "damaged_share", "damaged/empty/doublet shares must be >= 0")
        _require(
            abs(sum(shares) - 1) < 1e-6,
            "damaged_share",
            f"damaged_share + empty_share + doublet_share must be 1, got {sum(shares):g}",
        )
        _require(
            self.artifact_perturbation_dependence > 0,
            "artifact_perturbation_dependence",
            "must be > 0 (1 = artifacts independent of the perturbation)",
        )

    def _check_magnitudes(self) -> None:
        """Scales, dispersions and depths are positive (or non-negative where 0 switches a part
        off); the QC gene classes leave room for the other genes; a damaged cell keeps a share in
        (0, 1)."""
        for name in ("effect_size", "loading_scale", "decoder_nonlinearity", "expression_spread"):
            _require(getattr(self, name) >= 0, name, "must be >= 0")
        for name in ("theta_median", "library_median", "empty_library_fraction", "hb_share"):
            _require(getattr(self, name) > 0, name, "must be > 0")
        _require(self.library_sigma >= 0, "library_sigma", "must be >= 0")
        _require(0 < self.loading_density <= 1, "loading_density", "must lie in (0, 1]")
        _require(self.mt_share > 0 and self.ribo_share > 0, "mt_share", "MT and ribo shares > 0")
        _require(
            self.mt_share + self.ribo_share + self.hb_share < 1,
            "mt_share",
            "mt_share + ribo_share + hb_share must be < 1",
        )
        keep = self.damaged_keep
        _require(
            len(keep) == 2 and 0 < keep[0] <= keep[1] < 1,
            "damaged_keep",
            f"must be (low, high) with 0 < low <= high < 1, got {keep!r}",
        )

    def _check_cells_per_label(self) -> None:
        """At least one control cell, and one cell for every perturbation label."""
        n_control = self.n_control_cells
        _require(n_control >= 1, "n_cells", "too small to hold one control cell")
        _require(
            self.n_cells - n_control >= self.n_labels - 1,
            "n_cells",
            f"={self.n_cells} is too small for {self.n_labels - 1} perturbation labels",
        )

    @property
    def n_labels(self) -> int:
        """Control, the singles and the pairs."""
        return 1 + self.n_perturbations + self.n_pairs

    @property
    def n_control_cells(self) -> int:
        return round(self.control_fraction * self.n_cells)

    def to_dict(self) -> dict:
        """JSON-able (tuples become lists)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


def _require(ok: bool, field: str, message: str) -> None:
    if not ok:
        raise DataError(f"simulation config: {field} {message}")
