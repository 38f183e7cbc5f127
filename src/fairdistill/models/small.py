"""Small built-in networks with named taps: an MLP for tables, a CNN and a small ResNet for images."""

from __future__ import annotations

from typing import Literal

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


class ResNetSmallOptions(ModelOptions):
    #: Channels of ``layer1``..``layer4`` (torchvision's ResNet-18: 64, 128, 256, 512).
    widths: list[int] = Field(default=[16, 32, 64, 128], min_length=4, max_length=4)
    #: BasicBlocks per stage (ResNet-18: 2, 2, 2, 2).
    depths: list[int] = Field(default=[1, 1, 1, 1], min_length=4, max_length=4)
    #: ``small`` (3×3 stride-1 stem, for 28–64 px images) or ``imagenet`` (7×7 stride-2 conv + max-pool).
    stem: Literal["small", "imagenet"] = "small"


class BasicBlock(nn.Module):
    """Two 3×3 conv-BN layers with an identity (or 1×1 conv-BN projection) shortcut, as torchvision's."""

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.downsample: nn.Module | None = None
        if stride != 1 or in_channels != out_channels:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False), nn.BatchNorm2d(out_channels)
            )

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class ResNetSmall(nn.Module):
    """A ResNet with torchvision's module names: ``conv1 bn1 relu maxpool layer1..layer4 avgpool fc``.

    ``layer1`` keeps the stem's resolution, ``layer2``..``layer4`` each halve it; ``avgpool`` is the global
    average pool whose flattened output ``fc`` classifies (so the same taps and embedding paths as a
    torchvision or timm ResNet apply).
    """

    def __init__(
        self, in_channels: int, widths: list[int], depths: list[int], num_classes: int, stem: str = "small"
    ) -> None:
        super().__init__()
        if stem == "imagenet":
            self.conv1 = nn.Conv2d(in_channels, widths[0], 7, stride=2, padding=3, bias=False)
            self.maxpool: nn.Module = nn.MaxPool2d(3, stride=2, padding=1)
        else:
            self.conv1 = nn.Conv2d(in_channels, widths[0], 3, stride=1, padding=1, bias=False)
            self.maxpool = nn.Identity()
        self.bn1 = nn.BatchNorm2d(widths[0])
        self.relu = nn.ReLU(inplace=True)
        channels = widths[0]
        for k, (width, depth) in enumerate(zip(widths, depths, strict=True), start=1):
            stride = 2 if k > 1 else 1  # layer1 keeps the stem's resolution, each later stage halves it
            blocks = [BasicBlock(channels if i == 0 else width, width, stride if i == 0 else 1) for i in range(depth)]
            setattr(self, f"layer{k}", nn.Sequential(*blocks))
            channels = width
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(channels, num_classes)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        for k in range(1, 5):
            x = getattr(self, f"layer{k}")(x)
        return self.fc(self.avgpool(x).flatten(1))


#: Taps of a torchvision-style ResNet (``resnet-small``, ``torchvision:resnet*``, ``timm:resnet*``).
RESNET_TAPS: dict[str, str] = {f"layer{k}": f"layer{k}" for k in range(1, 5)}


@MODELS.register("resnet-small", options=ResNetSmallOptions, modality="image")
def build_resnet_small(options: ResNetSmallOptions, info: DatasetInfo) -> TappedModel:
    """Small ResNet of BasicBlocks; taps ``layer1``..``layer4`` (stage outputs), embedding the pooled ``fc`` input."""
    if info.input_shape is None or len(info.input_shape) != 3:
        raise ConfigError(
            f"model resnet-small needs image inputs (C, H, W); dataset {info.name} has shape {info.input_shape}"
        )
    for field, values in (("widths", options.widths), ("depths", options.depths)):
        if any(v <= 0 for v in values):
            raise ConfigError(f"model.{field}: every value must be positive, got {values}")
    module = ResNetSmall(info.input_shape[0], options.widths, options.depths, info.num_classes, options.stem)
    return TappedModel(module, taps=RESNET_TAPS, embedding="avgpool")
