"""A plain PyTorch MLP, written without abcparam: ``abcparam inspect examples/plain_mlp.py:build --optimizer adam --lr 1e-3``."""

import torch.nn as nn


def build(width: int) -> nn.Module:
    return nn.Sequential(nn.Linear(16, width), nn.ReLU(), nn.Linear(width, width), nn.ReLU(), nn.Linear(width, 4))
