"""Convolutional networks written the way users write them (plain torch), for the conversion and inspection tests.

:func:`resnet18` follows the structure of microsoft/mup's ResNet example (a CIFAR ResNet18 whose channel counts are
``width * (1, 2, 4, 8)``, BatchNorm after every convolution, 1x1 shortcuts, a linear readout), written here from its
description: ``blocks`` basic blocks per stage (the issue's runs use 1), and ``readout`` the class of the last layer
(``nn.Linear``, or mup's ``MuReadout``).
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import torch
from torch import nn
import torch.nn.functional as F


class BasicBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.shortcut = nn.Sequential()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(h)) + self.shortcut(x))


class ResNet18(nn.Module):
    def __init__(self, width: int, num_classes: int = 10, blocks: Sequence[int] = (1, 1, 1, 1),
                 readout: Callable[..., nn.Module] = nn.Linear) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, width, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        layers, c = [], width
        for i, n in enumerate(blocks):
            c_out = width * 2 ** i
            for j in range(n):
                layers.append(BasicBlock(c, c_out, 2 if i and j == 0 else 1))
                c = c_out
        self.layers = nn.Sequential(*layers)
        self.linear = readout(c, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.layers(F.relu(self.bn1(self.conv1(x))))
        return self.linear(F.adaptive_avg_pool2d(h, 1).flatten(1))


def resnet18_widths(width: int, stages: int = 4) -> list:
    """The channel counts that grow with the width."""
    return [width * 2 ** i for i in range(stages)]


def mup_resnet18(width: int, base_width: int = 8, **kw: Any) -> nn.Module:
    """microsoft/mup's way: MuReadout, then set_base_shapes against a base and a delta model."""
    import mup

    def make(w: int) -> nn.Module:
        return ResNet18(w, readout=mup.MuReadout, **kw)

    model = make(width)
    mup.set_base_shapes(model, make(base_width), delta=make(2 * base_width))
    for m in model.modules():  # the init of the example: mup's init for the convolutions, zero readout
        if isinstance(m, nn.Conv2d):
            mup.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
    return model
