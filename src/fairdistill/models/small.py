"""Small built-in networks with named taps: an MLP for tables and a CNN for images."""

from __future__ import annotations

from pydantic import Field
from torch import nn

from fairdistill.data.core import DatasetInfo
from fairdistill.errors import ConfigError
from fairdistill.models.core import MODELS, ModelOptions, TappedModel


class MLPOptions(ModelOptions):
    hidden: list[int] = Field(default=[64, 64], min_length=1)
    dropout: float = Field(default=0.0, ge=0.0, lt=1.0)


@MODELS.register("mlp", options=MLPOptions, modality="tabular")
def build_mlp(options: MLPOptions, info: DatasetInfo) -> TappedModel:
    """Multi-layer perceptron; taps ``hidden1``..``hiddenK`` are the post-activation hidden vectors."""
    if info.input_shape is None or len(info.input_shape) != 1:
        raise ConfigError(f"model mlp needs flat (tabular) inputs; dataset {info.name} has shape {info.input_shape}")
    if any(h <= 0 for h in options.hidden):
        raise ConfigError(f"model.hidden: every layer size must be positive, got {options.hidden}")
    layers: list[nn.Module] = []
    taps: dict[str, str] = {}
    width = info.input_shape[0]
    for k, size in enumerate(options.hidden, start=1):
        block = nn.Sequential(nn.Linear(width, size), nn.ReLU(), nn.Dropout(options.dropout))
        layers.append(block)
        taps[f"hidden{k}"] = f"{len(layers) - 1}.1"
        width = size
    layers.append(nn.Linear(width, info.num_classes))
    module = nn.Sequential(*layers)
    return TappedModel(module, taps=taps, embedding=taps[f"hidden{len(options.hidden)}"])


class CNNOptions(ModelOptions):
    width: int = Field(default=16, gt=0)
    blocks: int = Field(default=3, ge=1, le=5)


class SmallCNN(nn.Module):
    """Conv(3x3) → BatchNorm → ReLU → MaxPool blocks doubling the width, global average pool, linear head."""

    def __init__(self, in_channels: int, width: int, blocks: int, num_classes: int) -> None:
        super().__init__()
        stages = []
        channels = in_channels
        for k in range(blocks):
            out = width * 2**k
            stages.append(
                nn.Sequential(
                    nn.Conv2d(channels, out, kernel_size=3, padding=1, bias=False),
                    nn.BatchNorm2d(out),
                    nn.ReLU(),
                    nn.MaxPool2d(2) if k < blocks - 1 else nn.Identity(),
                )
            )
            channels = out
        self.blocks = nn.ModuleList(stages)
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = nn.Linear(channels, num_classes)

    def forward(self, x):
        for block in self.blocks:
            x = block(x)
        return self.head(self.pool(x))


@MODELS.register("cnn", options=CNNOptions, modality="image")
def build_cnn(options: CNNOptions, info: DatasetInfo) -> TappedModel:
    """Small CNN; taps ``block1``..``blockK`` are the blocks' feature maps, the embedding is the pooled last map."""
    if info.input_shape is None or len(info.input_shape) != 3:
        raise ConfigError(f"model cnn needs image inputs (C, H, W); dataset {info.name} has shape {info.input_shape}")
    module = SmallCNN(info.input_shape[0], options.width, options.blocks, info.num_classes)
    taps = {f"block{k + 1}": f"blocks.{k}" for k in range(options.blocks)}
    return TappedModel(module, taps=taps, embedding="pool")
