"""Sigmoid focal loss (Lin et al., "Focal Loss for Dense Object Detection", eq. 5).

  FL(p_t) = -alpha_t * (1 - p_t)^gamma * log(p_t)

with p the sigmoid of the logit, p_t = p for a positive target and 1 - p for a negative one,
alpha_t = alpha / (1 - alpha) likewise. Paper defaults (section 4.1): gamma = 2, alpha = 0.25.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def sigmoid_focal_loss(
    logits: jnp.ndarray,
    targets: jnp.ndarray,
    alpha: float = 0.25,
    gamma: float = 2.0,
) -> jnp.ndarray:
    """Elementwise sigmoid focal loss, float32.

    Args:
        logits: ``[...]`` logits (any float dtype; computed in float32).
        targets: ``[...]`` targets in [0, 1] (binary, or soft), broadcastable to ``logits``.
        alpha: weight of the positive term in (0, 1); ``alpha < 0`` disables the alpha weighting.
        gamma: focusing exponent >= 0 (0 gives plain binary cross-entropy).

    Returns:
        ``[...]`` float32 loss, unreduced. Finite for any finite logit, with finite gradients.
    """
    logits = jnp.asarray(logits, jnp.float32)
    targets = jnp.asarray(targets, jnp.float32)
    log_p = jax.nn.log_sigmoid(logits)  # log p
    log_not_p = jax.nn.log_sigmoid(-logits)  # log (1 - p), exact where 1 - p underflows
    ce = -(targets * log_p + (1.0 - targets) * log_not_p)
    # 1 - p_t = t * (1 - p) + (1 - t) * p, written with sigmoid(-x) so it does not round to 0 at
    # |x| ~ 17 the way 1 - sigmoid(x) does.
    one_minus_pt = targets * jax.nn.sigmoid(-logits) + (1.0 - targets) * jax.nn.sigmoid(logits)
    # q^gamma has an infinite derivative at q = 0 for gamma < 1; take the power only of q > 0.
    positive_q = one_minus_pt > 0.0
    safe_q = jnp.where(positive_q, one_minus_pt, 1.0)
    modulating = jnp.where(positive_q, safe_q**gamma, jnp.power(0.0, gamma))
    loss = ce * modulating
    # jnp.where rather than a Python `if`, so alpha may also be a traced value.
    alpha_t = alpha * targets + (1.0 - alpha) * (1.0 - targets)
    return jnp.where(jnp.asarray(alpha) >= 0, alpha_t * loss, loss)
