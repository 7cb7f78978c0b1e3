"""The same MLP converted to muP by abcparam:
``abcparam inspect examples/converted_mlp.py:build --optimizer adam --lr 1e-3``."""

import torch.nn as nn

import abcparam


def build(width: int) -> nn.Module:
    plain = nn.Sequential(nn.Linear(16, width), nn.ReLU(), nn.Linear(width, width), nn.ReLU(), nn.Linear(width, 4))
    abcparam.convert(plain, abcparam.mup(width, 64), widths=[width])  # in place
    return plain
