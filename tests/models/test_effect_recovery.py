"""A trained CRADLE predicts strong planted effects at their size, not shrunk toward zero.

The demo's network and training (experiments/configs/synthetic.py, shortened) on a small
simulated screen: for each single, the gene the planted truth moves most must move the same way in
the model's ATE and by at least half as much. Mask logits that start at the coin flip (0) or a
learning rate that leaves the masks undecided fail this: their predicted effects come out at a
quarter of the planted ones or less (docs/decisions.md#masks-start-on).
"""

from pathlib import Path

import numpy as np
import pytest

from cradle_jax.config import load_config_file
from cradle_jax.data.simulate import SimulationConfig, simulate
from cradle_jax.data.simulate.files import write_simulation
from cradle_jax.evaluate.scores.ate import model_ate
from cradle_jax.train.bundle import load_workdir
from cradle_jax.train.keys import purpose_key
from cradle_jax.train.loop import train_and_evaluate

CONFIG = Path(__file__).parents[2] / "experiments" / "configs" / "synthetic.py"
SIMULATION = SimulationConfig(
    n_cells=3000, n_genes=150, n_perturbations=4, n_pairs=0, artifact_fraction=0.1, seed=3
)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("effects")
    sim = simulate(SIMULATION)
    path, _ = write_simulation(sim, root / "sim.h5ad")
    config = load_config_file(CONFIG)
    config.data.path = str(path)
    config.data.split = "random"
    config.data.qc_doublets = False
    config.train.max_epochs = 40
    config.train.iwelbo_particles = 0
    train_and_evaluate(config, root / "run")
    bundle = load_workdir(root / "run")
    return bundle, sim.truth


def test_strongest_planted_effects_keep_their_sign_and_half_their_size(trained):
    bundle, truth = trained
    singles = [str(label) for label in truth["singles"]]
    labels = [str(label) for label in truth["labels"]]
    planted = truth["true_ate"][[labels.index(label) for label in singles]]
    predicted = model_ate(
        bundle.params, bundle.cfg, bundle.vocabulary, singles, purpose_key(0, "test/ate"),
        n_particles=256, chunk=bundle.config.eval.ate_chunk,
        from_means=bundle.config.eval.ate_from_means,
    )  # fmt: skip
    for row, label in enumerate(singles):
        gene = int(np.argmax(np.abs(planted[row])))
        truth_effect, model_effect = planted[row, gene], predicted[row, gene]
        assert np.sign(model_effect) == np.sign(truth_effect), (label, truth_effect, model_effect)
        assert abs(model_effect) >= 0.5 * abs(truth_effect), (label, truth_effect, model_effect)
