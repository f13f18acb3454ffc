"""Feature Pyramid Network neck as RetinaNet uses it (Lin et al. 2017, focal loss paper footnote 2).

P3-P5 come from C3-C5 through 1x1 lateral convs and a nearest-neighbour top-down pathway followed by
3x3 output convs; P6 is a 3x3 stride-2 conv on C5 (not on P5, and not max-pooling as in the FPN
paper) and P7 a 3x3 stride-2 conv on ReLU(P6).
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp


def _upsample_to(x, shape_hw):
    """Nearest-neighbour x2 upsampling, cropped to `shape_hw` (odd input sizes round up)."""
    x = jnp.repeat(jnp.repeat(x, 2, axis=1), 2, axis=2)
    return x[:, : shape_hw[0], : shape_hw[1], :]


class FPN(nn.Module):
    """Input dict of C-levels; output dict `{'P3'..'P7'}` of `[B, ceil(H/2^l), ceil(W/2^l), C]`."""

    num_channels: int = 256
    min_level: int = 3
    max_level: int = 7
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, features):
        if self.min_level != 3 or not 5 <= self.max_level <= 7:
            raise ValueError(
                f"FPN supports min_level=3 and max_level in 5..7, got {self.min_level}..{self.max_level}"
            )
        init = nn.initializers.xavier_uniform()
        conv = lambda k, s, name: nn.Conv(  # noqa: E731
            self.num_channels, (k, k), (s, s), kernel_init=init, dtype=self.dtype,
            param_dtype=self.param_dtype, name=name,
        )
        laterals = {l: conv(1, 1, f"lateral_C{l}")(features[f"C{l}"]) for l in (3, 4, 5)}
        top_down = {5: laterals[5]}
        for l in (4, 3):
            top_down[l] = laterals[l] + _upsample_to(top_down[l + 1], laterals[l].shape[1:3])
        out = {f"P{l}": conv(3, 1, f"output_P{l}")(top_down[l]) for l in (3, 4, 5)}
        if self.max_level >= 6:
            out["P6"] = conv(3, 2, "P6")(features["C5"])
        if self.max_level >= 7:
            out["P7"] = conv(3, 2, "P7")(jax.nn.relu(out["P6"]))
        return out
