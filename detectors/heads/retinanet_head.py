"""RetinaNet classification and box subnets (focal loss paper, section 4 and 4.1).

Each subnet is four 3x3 convs of C channels with ReLU and a final 3x3 conv; the same parameters are
applied to every pyramid level. Initialisation as in section 4.1: Gaussian weights with std 0.01 and
zero bias, except the final classification bias b = -log((1 - pi) / pi) so that every anchor starts
with foreground probability ~pi (pi = 0.01), which keeps the first iterations from being swamped by
the loss of the many easy negatives.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import flax.linen as nn
import jax.numpy as jnp


class RetinaNetHead(nn.Module):
    """Shared heads. Input: list of `[B, H_l, W_l, C]` levels (ascending). Output:
    `cls_logits [B, N, K]` and `box_deltas [B, N, 4]` with N = sum_l H_l*W_l*A, in the anchor order
    of `detectors.ops.anchors.generate_anchors` (level, y, x, anchor)."""

    num_classes: int = 1
    num_anchors: int = 9
    num_channels: int = 256
    num_convs: int = 4
    prior_prob: float = 0.01
    # None: the paper's plain convs. 'group': GroupNorm(32) after each tower conv, which (as in
    # later dense detectors such as FCOS) makes training from scratch converge much faster.
    norm: str | None = None
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    def setup(self):
        normal = nn.initializers.normal(stddev=0.01)
        mk = lambda feats, name, bias_init=nn.initializers.zeros: nn.Conv(  # noqa: E731
            feats, (3, 3), kernel_init=normal, bias_init=bias_init, dtype=self.dtype,
            param_dtype=self.param_dtype, name=name,
        )
        self.cls_convs = [mk(self.num_channels, f"cls_conv{i}") for i in range(self.num_convs)]
        self.box_convs = [mk(self.num_channels, f"box_conv{i}") for i in range(self.num_convs)]
        if self.norm not in (None, "group"):
            raise ValueError(f"Unknown model.head_norm {self.norm!r}; valid: [None, 'group']")
        if self.norm == "group":
            groups = min(32, self.num_channels)
            gn = lambda name: nn.GroupNorm(num_groups=groups, dtype=self.dtype, name=name)  # noqa: E731
            self.cls_norms = [gn(f"cls_norm{i}") for i in range(self.num_convs)]
            self.box_norms = [gn(f"box_norm{i}") for i in range(self.num_convs)]
        else:
            self.cls_norms = [lambda x: x] * self.num_convs
            self.box_norms = [lambda x: x] * self.num_convs
        prior_bias = -math.log((1.0 - self.prior_prob) / self.prior_prob)
        self.cls_out = mk(
            self.num_classes * self.num_anchors, "cls_out", nn.initializers.constant(prior_bias)
        )
        self.box_out = mk(4 * self.num_anchors, "box_out")

    def __call__(self, levels: Sequence[jnp.ndarray]):
        cls_all, box_all = [], []
        for x in levels:
            b = x.shape[0]
            c = x
            for conv, norm in zip(self.cls_convs, self.cls_norms):
                c = nn.relu(norm(conv(c)))
            y = x
            for conv, norm in zip(self.box_convs, self.box_norms):
                y = nn.relu(norm(conv(y)))
            cls_all.append(self.cls_out(c).reshape(b, -1, self.num_classes))
            box_all.append(self.box_out(y).reshape(b, -1, 4))
        # Outputs leave the (possibly bf16) compute dtype here: losses and decoding run in float32.
        return {
            "cls_logits": jnp.concatenate(cls_all, axis=1).astype(jnp.float32),
            "box_deltas": jnp.concatenate(box_all, axis=1).astype(jnp.float32),
        }
