import jax.numpy as jnp
import numpy as np

from cradle_jax.train.step import make_optimizer


def test_optimizer_clips_then_adds_coupled_decay_before_adam():
    """First Adam step moves each weight by lr·sign(g'), g' = clip(g) + wd·p (SPEC A3)."""
    lr, wd, clip = 0.1, 1.0, 100.0
    params = {"w": jnp.array([0.0, -1.0, 2.0])}
    grads = {"w": jnp.array([1000.0, 1e-3, 0.0])}
    optimizer = make_optimizer(lr, weight_decay=wd, clip_norm=clip)
    updates, _ = optimizer.update(grads, optimizer.init(params), params)
    g = np.array([1000.0, 1e-3, 0.0])
    g = g * min(1.0, clip / np.linalg.norm(g)) + wd * np.array([0.0, -1.0, 2.0])
    m_hat, v_hat = g, g**2  # bias-corrected first moments after one step
    expected = -lr * m_hat / (np.sqrt(v_hat) + 1e-8)
    np.testing.assert_allclose(updates["w"], expected, rtol=1e-5)
    # the decay flipped the second gradient's sign: it acted before Adam, not after
    assert float(updates["w"][1]) > 0
