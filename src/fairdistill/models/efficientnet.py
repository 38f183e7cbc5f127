"""EfficientNet-b0..b7 (Tan & Le, ICML 2019) from the torch-only ``efficientnet-pytorch`` package.

The package needs nothing but torch, so the seed-002 pair (EfficientNet-b3 teacher → b0 student on WIDER
Attribute) builds, taps and trains offline on CPU. ``pretrained: true`` downloads the ImageNet weights
(``EfficientNet.from_pretrained``: GitHub releases, cached under ``~/.cache/torch/hub/checkpoints``);
``weights: FILE`` loads them from a local file instead. The classifier (``_fc``) is always new, sized to the
dataset's classes.

Taps ``stage1``..``stage7`` are the outputs of the seven MBConv stages: stage k is the last block of the k-th
row of the architecture's block table (``_blocks.<i>``; b0 has 1, 2, 2, 3, 3, 4, 1 blocks per stage, deeper
variants more, rounded up by the depth coefficient). Their strides are 2, 4, 8, 16, 16, 32, 32 (b0 widths 16,
24, 40, 80, 112, 192, 320), so at 224 px they are 112, 56, 28, 14, 14, 7, 7 pixels wide, at 32 px 16, 8, 4, 2,
2, 1, 1. The embedding is the globally average-pooled output of the head convolution (``_avg_pooling``: 1280
features for b0, 1536 for b3), the vector that the dropout and ``_fc`` classify.
"""

from __future__ import annotations

import math
from typing import Any, Literal

from pydantic import Field

from fairdistill.data.core import DatasetInfo
from fairdistill.errors import ConfigError
from fairdistill.models.core import MODELS, ModelOptions, TappedModel

#: The package that provides the family, and how to install it.
PACKAGE = "efficientnet-pytorch"
INSTALL = "pip install 'fairdistill[vision]' (or pip install efficientnet-pytorch)"


class EfficientNetOptions(ModelOptions):
    variant: Literal["b0", "b1", "b2", "b3", "b4", "b5", "b6", "b7"] = "b0"
    #: Download the ImageNet weights (needs the internet once; cached by torch afterwards).
    pretrained: bool = False
    #: A local file of ImageNet weights (the package's ``.pth``), instead of downloading them.
    weights: str | None = None
    #: Dropout before the classifier; None: the variant's (0.2 for b0, 0.3 for b3).
    dropout: float | None = Field(default=None, ge=0.0, lt=1.0)
    #: Stochastic depth (drop-connect) rate of the blocks, scaled by depth; the package's default is 0.2.
    drop_connect: float = Field(default=0.2, ge=0.0, lt=1.0)


def efficientnet_module() -> Any:
    """The ``EfficientNet`` class, imported when a model is built (one clear error when the package is missing)."""
    try:
        from efficientnet_pytorch import EfficientNet
    except ImportError:
        raise ConfigError(
            f"model efficientnet needs the {PACKAGE} package, which is not installed; run {INSTALL}"
        ) from None
    return EfficientNet


def stage_block_indices(module: Any) -> list[int]:
    """Index in ``module._blocks`` of the last block of each stage (row of the block table), in order.

    The package repeats row k ``round_repeats(num_repeat)`` = ceil(depth_coefficient × num_repeat) times.
    """
    depth = module._global_params.depth_coefficient
    ends, total = [], 0
    for args in module._blocks_args:
        total += int(math.ceil(depth * args.num_repeat)) if depth else args.num_repeat
        ends.append(total - 1)
    if total != len(module._blocks):
        raise ConfigError(
            f"model efficientnet: expected {total} blocks from the block table, found {len(module._blocks)}"
        )
    return ends


@MODELS.register("efficientnet", options=EfficientNetOptions, modality="image", requires="efficientnet_pytorch")
def build_efficientnet(options: EfficientNetOptions, info: DatasetInfo) -> TappedModel:
    """EfficientNet-b0..b7 (efficientnet-pytorch); taps ``stage1``..``stage7``, embedding the pooled head features."""
    if info.input_shape is None or len(info.input_shape) != 3:
        raise ConfigError(
            f"model efficientnet needs image inputs (C, H, W); dataset {info.name} has shape {info.input_shape}"
        )
    EfficientNet = efficientnet_module()
    channels, height, width = info.input_shape
    name = f"efficientnet-{options.variant}"
    overrides: dict[str, Any] = {"image_size": [height, width], "drop_connect_rate": options.drop_connect}
    if options.dropout is not None:
        overrides["dropout_rate"] = options.dropout
    if options.pretrained or options.weights is not None:
        try:
            module = EfficientNet.from_pretrained(
                name, weights_path=options.weights, in_channels=channels, num_classes=info.num_classes, **overrides
            )
        except (OSError, RuntimeError, ValueError, AssertionError) as exc:  # URLError: OSError; bad file: the others
            source = f"the file {options.weights!r}" if options.weights else "the internet (GitHub releases)"
            raise ConfigError(
                f"model efficientnet: cannot load the pretrained {name} weights from {source} "
                f"({type(exc).__name__}: {str(exc)[:200]}); offline, give weights: a local .pth file or use "
                "pretrained: false"
            ) from None
    else:
        module = EfficientNet.from_name(name, in_channels=channels, num_classes=info.num_classes, **overrides)
    taps = {f"stage{k}": f"_blocks.{i}" for k, i in enumerate(stage_block_indices(module), start=1)}
    return TappedModel(module, taps=taps, embedding="_avg_pooling")
