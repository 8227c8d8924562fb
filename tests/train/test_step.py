import jax
import jax.numpy as jnp
import numpy as np

from tests.settings import plain_optimizer


def test_optimizer_clips_then_adds_coupled_decay_before_adam():
    """First Adam step moves each weight by lr·sign(g'), g' = clip(g) + wd·p
    (docs/method.md#optimiser)."""
    lr, wd, clip = 0.1, 1.0, 100.0
    params = {"w": jnp.array([0.0, -1.0, 2.0])}
    grads = {"w": jnp.array([1000.0, 1e-3, 0.0])}
    optimizer = plain_optimizer(lr, weight_decay=wd, clip_norm=clip)
    updates, _ = optimizer.update(grads, optimizer.init(params), params)
    g = np.array([1000.0, 1e-3, 0.0])
    g = g * min(1.0, clip / np.linalg.norm(g)) + wd * np.array([0.0, -1.0, 2.0])
    m_hat, v_hat = g, g**2  # bias-corrected first moments after one step
    expected = -lr * m_hat / (np.sqrt(v_hat) + 1e-8)
    np.testing.assert_allclose(updates["w"], expected, rtol=1e-5)
    # the decay flipped the second gradient's sign: it acted before Adam, not after
    assert float(updates["w"][1]) > 0


def test_mask_logits_take_scaled_adam_steps_and_other_parameters_do_not():
    """With mask_lr_scale s the mask logits' first Adam step is −s·lr·sign(g), every other
    parameter's −lr·sign(g), nested parameters included."""
    lr, scale = 0.01, 10.0
    params = {
        "mask_logits": jnp.zeros((2, 3)),
        "decoder$params": {"kernel": jnp.zeros((3,))},
        "E_loc": jnp.zeros((2,)),
    }
    grads = {
        "mask_logits": jnp.full((2, 3), 0.5),
        "decoder$params": {"kernel": jnp.array([1.0, -2.0, 3.0])},
        "E_loc": jnp.array([-4.0, 5.0]),
    }
    optimizer = plain_optimizer(lr, weight_decay=0.0, mask_lr_scale=scale)
    updates, _ = optimizer.update(grads, optimizer.init(params), params)
    np.testing.assert_allclose(updates["mask_logits"], np.full((2, 3), -scale * lr), rtol=1e-5)
    np.testing.assert_allclose(
        updates["decoder$params"]["kernel"], -lr * np.array([1.0, -1.0, 1.0]), rtol=1e-5
    )
    np.testing.assert_allclose(updates["E_loc"], -lr * np.array([-1.0, 1.0]), rtol=1e-5)


def test_dispersions_take_their_own_scaled_adam_steps():
    """dispersion_lr_scale scales the first Adam step of every NB log dispersion (the decoder's
    nested `log_theta` and CRADLE's `artifact_log_theta`) and of nothing else."""
    lr, mask_scale, dispersion_scale = 0.01, 10.0, 4.0
    params = {
        "mask_logits": jnp.zeros((2,)),
        "artifact_log_theta": jnp.zeros((3,)),
        "decoder$params": {"log_theta": jnp.zeros((3,)), "kernel": jnp.zeros((3,))},
    }
    grads = jax.tree_util.tree_map(lambda x: jnp.ones_like(x), params)
    optimizer = plain_optimizer(
        lr, weight_decay=0.0, mask_lr_scale=mask_scale, dispersion_lr_scale=dispersion_scale
    )
    updates, _ = optimizer.update(grads, optimizer.init(params), params)
    np.testing.assert_allclose(updates["mask_logits"], -mask_scale * lr, rtol=1e-5)
    np.testing.assert_allclose(updates["artifact_log_theta"], -dispersion_scale * lr, rtol=1e-5)
    decoder = updates["decoder$params"]
    np.testing.assert_allclose(decoder["log_theta"], -dispersion_scale * lr, rtol=1e-5)
    np.testing.assert_allclose(decoder["kernel"], -lr, rtol=1e-5)
