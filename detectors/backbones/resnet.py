"""ResNet backbones (He et al. 2016) returning the C3-C5 feature maps a feature pyramid needs.

Depths 18/34 use basic blocks, 50/101 bottleneck blocks; `tiny` is a narrow two-stage-per-block
variant for tests and CPU quick starts. BatchNorm is either trained (statistics over the global
batch: under `jax.jit` on a sharded batch the mean is taken across devices, i.e. synchronised BN) or
frozen (`frozen_bn=True`: running statistics always, as detectors fine-tuned from ImageNet use).
"""

from __future__ import annotations

import functools
from typing import Any, Sequence

import flax.linen as nn
import jax.numpy as jnp

# name -> (block kind, blocks per stage, stem width, stage widths)
RESNET_SPECS = {
    "tiny": ("basic", (1, 1, 1, 1), 16, (16, 32, 64, 128)),
    "small": ("basic", (1, 1, 1, 1), 32, (32, 64, 128, 256)),
    # ResNet-18's depth at a quarter of its width: receptive field and depth for little compute.
    "resnet18_quarter": ("basic", (1, 2, 2, 2), 16, (16, 32, 64, 128)),
    "resnet18": ("basic", (2, 2, 2, 2), 64, (64, 128, 256, 512)),
    "resnet34": ("basic", (3, 4, 6, 3), 64, (64, 128, 256, 512)),
    "resnet50": ("bottleneck", (3, 4, 6, 3), 64, (64, 128, 256, 512)),
    "resnet101": ("bottleneck", (3, 4, 23, 3), 64, (64, 128, 256, 512)),
}


class BasicBlock(nn.Module):
    """Two 3x3 convs with an identity (or 1x1 projection) shortcut."""

    features: int
    strides: int
    norm: Any
    dtype: Any
    param_dtype: Any

    @nn.compact
    def __call__(self, x):
        conv = functools.partial(
            nn.Conv, use_bias=False, dtype=self.dtype, param_dtype=self.param_dtype
        )
        y = conv(self.features, (3, 3), (self.strides, self.strides), name="conv1")(x)
        y = nn.relu(self.norm(name="bn1")(y))
        y = conv(self.features, (3, 3), name="conv2")(y)
        # Zero-init of the last BN scale makes each residual block start as identity.
        y = self.norm(name="bn2", scale_init=nn.initializers.zeros)(y)
        if x.shape[-1] != self.features or self.strides != 1:
            x = conv(self.features, (1, 1), (self.strides, self.strides), name="proj")(x)
            x = self.norm(name="proj_bn")(x)
        return nn.relu(x + y)


class BottleneckBlock(nn.Module):
    """1x1 reduce, 3x3 (carrying the stride, as in the torchvision 'v1.5' ResNet), 1x1 expand x4."""

    features: int
    strides: int
    norm: Any
    dtype: Any
    param_dtype: Any

    @nn.compact
    def __call__(self, x):
        conv = functools.partial(
            nn.Conv, use_bias=False, dtype=self.dtype, param_dtype=self.param_dtype
        )
        y = nn.relu(self.norm(name="bn1")(conv(self.features, (1, 1), name="conv1")(x)))
        y = conv(self.features, (3, 3), (self.strides, self.strides), name="conv2")(y)
        y = nn.relu(self.norm(name="bn2")(y))
        y = conv(self.features * 4, (1, 1), name="conv3")(y)
        y = self.norm(name="bn3", scale_init=nn.initializers.zeros)(y)
        if x.shape[-1] != self.features * 4 or self.strides != 1:
            x = conv(self.features * 4, (1, 1), (self.strides, self.strides), name="proj")(x)
            x = self.norm(name="proj_bn")(x)
        return nn.relu(x + y)


class ResNet(nn.Module):
    """ResNet trunk.

    Input: `[B, H, W, 3]` images (already normalised). Output: dict `{'C2'..'C5'}` of
    `[B, H/2^l, W/2^l, C_l]` feature maps (strides 4, 8, 16, 32).
    """

    name_or_depth: str = "resnet50"
    frozen_bn: bool = False
    bn_momentum: float = 0.9
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, images, train: bool = False):
        if self.name_or_depth not in RESNET_SPECS:
            raise ValueError(
                f"Unknown backbone {self.name_or_depth!r}; valid: {sorted(RESNET_SPECS)}"
            )
        kind, blocks, stem, widths = RESNET_SPECS[self.name_or_depth]
        block_cls = BasicBlock if kind == "basic" else BottleneckBlock
        norm = functools.partial(
            nn.BatchNorm,
            use_running_average=self.frozen_bn or not train,
            momentum=self.bn_momentum,
            epsilon=1e-5,
            dtype=self.dtype,
            param_dtype=self.param_dtype,
        )
        x = images.astype(self.dtype)
        x = nn.Conv(
            stem, (7, 7), (2, 2), padding=[(3, 3), (3, 3)], use_bias=False,
            dtype=self.dtype, param_dtype=self.param_dtype, name="stem_conv",
        )(x)
        x = nn.relu(norm(name="stem_bn")(x))
        x = nn.max_pool(x, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))
        features = {}
        for stage, (num_blocks, width) in enumerate(zip(blocks, widths)):
            for b in range(num_blocks):
                strides = 2 if (b == 0 and stage > 0) else 1
                x = block_cls(
                    width, strides, norm, self.dtype, self.param_dtype,
                    name=f"stage{stage + 1}_block{b + 1}",
                )(x)
            features[f"C{stage + 2}"] = x
        return features


def backbone_channels(name: str) -> Sequence[int]:
    """Output channels of C2..C5 for a backbone name (for tests and FPN sizing)."""
    kind, _, _, widths = RESNET_SPECS[name]
    mult = 4 if kind == "bottleneck" else 1
    return tuple(w * mult for w in widths)
