"""Small reference models built from abcparam layers (for the demo, the coordinate check and docs).

>>> import torch, abcparam
>>> net = abcparam.models.MLP(8, 256, 3, depth=3, param=abcparam.mup(256, 64))
>>> net(torch.randn(2, 8)).shape
torch.Size([2, 3])
"""

from __future__ import annotations

from typing import Callable, Dict

from . import validate
from . import torch_quiet  # noqa: F401  (torch without the numpy warning)
import torch
from torch import nn

from .layers import Linear
from .theory.parametrizations import Parametrization

__all__ = ["MLP", "ResidualMLP", "ResNet", "TinyTransformer", "NONLINEARITIES"]

NONLINEARITIES: Dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "tanh": torch.tanh,
    "gelu": nn.functional.gelu,
    "relu": torch.relu,
    "linear": lambda x: x,
}


class MLP(nn.Module):
    """input -> (depth - 1) hidden -> readout, a nonlinearity after every layer but the last.

    ``depth`` is L, the number of hidden layers of docs/theory.md section 1 (the
    number of nonlinearities); the network has L + 1 abcparam layers.
    """

    def __init__(
        self, d_in: int, width: int, d_out: int, *, depth: int = 3, param: Parametrization, nonlinearity: str = "tanh", bias: bool = True
    ) -> None:
        validate.choice(nonlinearity, "nonlinearity", NONLINEARITIES)
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


class ResidualMLP(nn.Module):
    """A pre-norm residual MLP: input layer, ``blocks`` residual blocks (norm -> linear -> GELU -> linear, scaled by
    :class:`~abcparam.Residual`), a final norm and the readout (docs/theory.md section 12).

    ``param`` carries the depth rule: build it with ``depth=blocks`` and a
    ``base_depth`` (``param.at_depth(blocks)``); without depth the branches are
    not scaled.

    >>> import torch, abcparam
    >>> p = abcparam.mup(128, 64, depth=8, base_depth=2)
    >>> net = abcparam.models.ResidualMLP(16, 128, 4, blocks=8, param=p)
    >>> net(torch.randn(3, 16)).shape, net.blocks[0].multiplier
    (torch.Size([3, 4]), 0.25)
    """

    def __init__(self, d_in: int, width: int, d_out: int, *, blocks: int, param: Parametrization, mult: int = 1) -> None:
        from .norms import LayerNorm
        from .residual import Residual

        if isinstance(blocks, bool) or not isinstance(blocks, int) or blocks < 1:
            raise ValueError(f"blocks: the number of residual blocks, an int >= 1; got {blocks!r}")
        super().__init__()
        self.inp = Linear(d_in, width, role="input", param=param)
        self.blocks = nn.ModuleList(
            Residual(nn.Sequential(LayerNorm(width, param=param), Linear(width, mult * width, param=param), nn.GELU(),
                                   Linear(mult * width, width, param=param)), param=param)
            for _ in range(blocks)
        )
        self.norm = LayerNorm(width, param=param)
        self.out = Linear(width, d_out, role="output", param=param)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.inp(x)
        for block in self.blocks:
            h = h + block(h)
        return self.out(self.norm(h))


class _Attention(nn.Module):
    """Pre-norm causal self-attention: norm -> qkv -> heads (einops) -> attention -> proj."""

    def __init__(self, width: int, n_heads: int, scale: float, param: Parametrization) -> None:
        super().__init__()
        self.n_heads, self.scale, self.head_dim = n_heads, scale, width // n_heads  # the scale, observable (inspect)
        self.qkv = Linear(width, 3 * width, False, param=param)
        self.proj = Linear(width, width, param=param)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        from einops import rearrange

        x = nn.functional.layer_norm(h, h.shape[-1:])
        q, k, v = rearrange(self.qkv(x), "b t (three h d) -> three b h t d", three=3, h=self.n_heads)
        a = nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True, scale=self.scale)
        return self.proj(rearrange(a, "b h t d -> b t (h d)"))


class _FeedForward(nn.Module):
    """Pre-norm MLP: norm -> up (4x) -> GELU -> down."""

    def __init__(self, width: int, param: Parametrization) -> None:
        super().__init__()
        self.up = Linear(width, 4 * width, param=param)
        self.down = Linear(4 * width, width, param=param)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.down(nn.functional.gelu(self.up(nn.functional.layer_norm(h, h.shape[-1:]))))


class TinyTransformer(nn.Module):
    """A small causal transformer of abcparam layers: embeddings, attention, MLP blocks, readout.

    Token and position embeddings are input layers; every projection inside
    the blocks is hidden; the readout is an output layer or, with ``tie=True``,
    a :class:`~abcparam.TiedReadout` sharing the token table.  Heads are split
    and merged with einops.  Attention logits use muP's ``1/d_head`` scaling
    (docs/theory.md section 7), normalised to equal the usual ``1/sqrt(d_head)`` at
    base width, when ``mup_attention`` is true (the default for muP
    parametrizations); otherwise ``1/sqrt(d_head)``.  Layer norms carry no
    gains, so every trained tensor belongs to an abcparam layer.  Each block's
    attention and MLP are :class:`~abcparam.Residual` branches, so a ``param``
    built with ``depth=n_layers`` and a ``base_depth`` scales them with depth
    (docs/theory.md section 12); without depth their multiplier is 1.
    """

    def __init__(
        self,
        vocab: int,
        width: int,
        *,
        param: Parametrization,
        n_heads: int = 4,
        n_layers: int = 2,
        context: int = 64,
        tie: bool = False,
        mup_attention: "bool | None" = None,
    ) -> None:
        super().__init__()
        from .layers import Embedding, TiedReadout
        from .residual import Residual

        if width % n_heads:
            raise ValueError(f"n_heads: must divide width={width}, got {n_heads}")
        self.n_heads, self.context = n_heads, context
        d_head = width // n_heads
        base_d_head = d_head / float(param.width_mult)
        if mup_attention is None:
            mup_attention = param.name.startswith("mup")
        self.attn_scale = (base_d_head ** 0.5) / d_head if mup_attention else d_head ** -0.5
        self.tok = Embedding(vocab, width, param=param)
        self.pos = Embedding(context, width, param=param)
        self.blocks = nn.ModuleList(
            nn.ModuleDict({"attn": Residual(_Attention(width, n_heads, self.attn_scale, param), param=param),
                           "mlp": Residual(_FeedForward(width, param), param=param)})
            for _ in range(n_layers)
        )
        self.head = TiedReadout(self.tok, param=param) if tie else Linear(width, vocab, role="output", param=param)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        t = idx.shape[-1]
        if t > self.context:
            raise ValueError(f"idx: sequence length {t} exceeds context={self.context}")
        h = self.tok(idx) + self.pos(torch.arange(t, device=idx.device))
        for blk in self.blocks:
            h = h + blk["attn"](h)
            h = h + blk["mlp"](h)
        return self.head(nn.functional.layer_norm(h, h.shape[-1:]))


_NORMS = ("batch", "group", "none")


def _conv_norm(kind: str, channels: int, param: Parametrization) -> nn.Module:
    from .norms import BatchNorm2d, GroupNorm

    if kind == "batch":
        return BatchNorm2d(channels, param=param)
    if kind == "group":
        return GroupNorm(min(8, channels), channels, param=param)  # a fixed number of groups: each grows with width
    return nn.Identity()


class _BasicBlock(nn.Module):
    """conv 3x3 -> norm -> ReLU -> conv 3x3 -> norm, plus the shortcut (a 1x1 conv and norm when the shape changes)."""

    def __init__(self, c_in: int, c_out: int, stride: int, norm: str, param: Parametrization) -> None:
        from .conv import Conv2d

        super().__init__()
        bias = norm == "none"
        self.conv1 = Conv2d(c_in, c_out, 3, stride, 1, bias=bias, role="hidden", param=param)
        self.norm1 = _conv_norm(norm, c_out, param)
        self.conv2 = Conv2d(c_out, c_out, 3, 1, 1, bias=bias, role="hidden", param=param)
        self.norm2 = _conv_norm(norm, c_out, param)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(Conv2d(c_in, c_out, 1, stride, bias=bias, role="hidden", param=param),
                                          _conv_norm(norm, c_out, param))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.norm1(self.conv1(x)))
        return torch.relu(self.norm2(self.conv2(h)) + self.shortcut(x))


class ResNet(nn.Module):
    """A small CIFAR-style ResNet of abcparam layers: a 3x3 stem, stages of basic blocks, average pool, readout.

    Stage ``i`` has ``width * 2**i`` channels (the width multiplier: every
    channel count grows with ``width``) and ``blocks[i]`` basic blocks; each
    stage after the first halves the image.  The stem is the input layer (its
    ``in_channels`` colours are fixed), every other convolution hidden (fan-in
    ``channels * 9``), the readout an output :class:`~abcparam.Linear`; norms
    (``"batch"``, ``"group"`` or ``"none"``) are abcparam's, with vector-like
    gains (docs/theory.md section 17).

    >>> import torch, abcparam
    >>> net = abcparam.models.ResNet(3, 32, 10, blocks=(1, 1), param=abcparam.mup(32, 16))
    >>> net(torch.randn(2, 3, 16, 16)).shape
    torch.Size([2, 10])
    """

    def __init__(self, in_channels: int, width: int, num_classes: int, *, param: Parametrization,
                 blocks: "tuple[int, ...]" = (1, 1, 1), norm: str = "batch") -> None:
        from .conv import Conv2d

        validate.choice(norm, "norm", _NORMS)
        if not (isinstance(blocks, (tuple, list)) and blocks and all(isinstance(b, int) and not isinstance(b, bool) and b >= 1
                                                                       for b in blocks)):
            raise ValueError(f"blocks: expected a non-empty sequence of ints >= 1 (basic blocks per stage), got {blocks!r}")
        super().__init__()
        self.stem = Conv2d(in_channels, width, 3, 1, 1, bias=norm == "none", role="input", param=param)
        self.stem_norm = _conv_norm(norm, width, param)
        stages, c = [], width
        for i, n in enumerate(blocks):
            c_out = width * 2 ** i
            stages.append(nn.Sequential(*[_BasicBlock(c if j == 0 else c_out, c_out, 2 if i and j == 0 else 1, norm, param)
                                          for j in range(n)]))
            c = c_out
        self.stages = nn.Sequential(*stages)
        self.readout = Linear(c, num_classes, role="output", param=param)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.stages(torch.relu(self.stem_norm(self.stem(x))))
        return self.readout(h.mean(dim=(-2, -1)))
