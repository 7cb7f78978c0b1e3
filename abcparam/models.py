"""Small reference models built from abcparam layers (for the demo, the coordinate check and docs).

>>> import torch, abcparam
>>> net = abcparam.models.MLP(8, 256, 3, depth=3, param=abcparam.mup(256, 64))
>>> net(torch.randn(2, 8)).shape
torch.Size([2, 3])
"""

from __future__ import annotations

from typing import Callable, Dict

import torch
from torch import nn

from .layers import Linear
from .parametrization import Parametrization

__all__ = ["MLP", "NONLINEARITIES"]

NONLINEARITIES: Dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "tanh": torch.tanh,
    "gelu": nn.functional.gelu,
    "relu": torch.relu,
    "linear": lambda x: x,
}


class MLP(nn.Module):
    """input -> (depth - 1) hidden -> readout, a nonlinearity after every layer but the last.

    ``depth`` is L, the number of hidden layers of THEORY.md section 1 (the
    number of nonlinearities); the network has L + 1 abcparam layers.
    """

    def __init__(
        self, d_in: int, width: int, d_out: int, *, depth: int = 3, param: Parametrization, nonlinearity: str = "tanh", bias: bool = True
    ) -> None:
        if nonlinearity not in NONLINEARITIES:
            raise ValueError(f"nonlinearity: got {nonlinearity!r}; allowed: {', '.join(NONLINEARITIES)}")
        if isinstance(depth, bool) or not isinstance(depth, int) or depth < 1:
            raise ValueError(f"depth: the number of hidden layers L, an int >= 1; got {depth!r}")
        super().__init__()
        self.nonlinearity = nonlinearity
        layers = [Linear(d_in, width, bias, role="input", param=param)]
        layers += [Linear(width, width, bias, role="hidden", param=param) for _ in range(depth - 1)]
        layers.append(Linear(width, d_out, bias, role="output", param=param))
        self.layers = nn.ModuleList(layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        act = NONLINEARITIES[self.nonlinearity]
        for layer in self.layers[:-1]:
            x = act(layer(x))
        return self.layers[-1](x)
