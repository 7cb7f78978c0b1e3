"""Convolutions with abc-exponents: ``Conv1d``, ``Conv2d``, ``Conv3d`` (docs/theory.md section 17).

A convolution is a linear layer whose width is its channel count: each output
coordinate sums ``(in_channels / groups) * prod(kernel_size)`` terms, so that
is its fan-in, and the kernel size is a fixed factor that goes into the
base-width constant (the spatial size is data).  Its role follows from which
channel counts grow, as for :class:`abcparam.Linear`: ``input`` (a fixed number
of channels in, e.g. 3 colours, width out), ``hidden`` (width in and out) and
``output`` (width in, fixed out), with that role's a, b and c.

A depthwise or grouped convolution whose number of groups grows with the width
has a fixed fan-in (``prod(kernel_size)`` times a fixed group size): each
kernel only moves its own channels, so it is *vector-like*, trained like a
bias or a norm gain (role ``"vector"``: the input layer's exponents, stored as
effective values).

The stored tensors keep torch's names and shapes (``weight`` of shape
``(out, in / groups, *kernel)``, ``bias``), so a checkpoint moves between
these layers and torch's; at m = 1 the forward is torch's exactly.

>>> import torch, abcparam
>>> p = abcparam.mup(width=128, base_width=32)
>>> conv = abcparam.Conv2d(128, 128, 3, padding=1, param=p)
>>> conv.role, conv.fan_in, conv.abc_scales()["weight"].lr("adam")
('hidden', 1152, 0.25)
>>> conv(torch.randn(2, 128, 8, 8)).shape
torch.Size([2, 128, 8, 8])
"""

from __future__ import annotations

import math
from typing import Any, Optional, Tuple

from . import torch_quiet  # noqa: F401  (torch without the numpy warning)
import torch
from torch import nn

from . import validate
from .layers import UNIT_SCALES, WeightedLayer, check_fold, role_config, scales_for
from .roles import infer_role, size_kind
from .theory.parametrizations import Parametrization

__all__ = ["Conv1d", "Conv2d", "Conv3d", "TORCH_CONVS", "conv_role", "torch_conv"]

TORCH_CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)  # torch's convolutions (abcparam's subclass them)


def torch_conv(mod: nn.Module) -> Any:
    """The torch convolution class ``mod`` is (or subclasses): its ``_conv_forward(mod, x, kernel, bias)`` convolves
    with any kernel."""
    return next(t for t in TORCH_CONVS if isinstance(mod, t))

_CONV_ROLES = ("input", "hidden", "output", "vector")

# The width-sized dimensions of a weight of shape (out_channels, in_channels / groups, *kernel) for each role.
_CONV_WIDTH_DIMS = {"input": (0,), "hidden": (0, 1), "output": (1,), "vector": (0,)}


def conv_role(in_channels: int, out_channels: int, groups: int, role: Optional[str], param: Parametrization,
              layer: str = "Conv2d") -> str:
    """The role of a convolution: ``role`` checked against the channel counts, or inferred from them.

    ``"vector"`` when the number of groups grows with the width (a depthwise
    or grouped convolution: a fixed fan-in, each kernel moving only its own
    channels; docs/theory.md section 17); otherwise the channels decide as
    :class:`abcparam.Linear`'s features do.
    """
    shape = f"{layer}({in_channels}, {out_channels}, groups={groups}) at width {param.width}"
    kind = size_kind(groups, param.width) if groups > 1 else "fixed"
    grouped = kind == "width"
    if role is not None:
        validate.choice(role, "role", _CONV_ROLES)
    elif kind == "unknown":
        raise ValueError(
            f"role: cannot tell whether the {groups} groups of {shape} grow with the width; pass role='vector' if they "
            "do (a fixed number of channels per group), or the role its channels give if they do not"
        )
    if role == "vector" or (role is None and grouped):
        if kind == "fixed":
            raise ValueError(
                f"role: 'vector' is for a depthwise or grouped convolution whose number of groups grows with the width; "
                f"{shape} has {groups} group(s), not a multiple of the width. Pass role='input', 'hidden' or 'output'"
            )
        if size_kind(out_channels, param.width) == "fixed":  # a given role is refused only where the sizes rule it out
            raise ValueError(f"role: {shape} has {out_channels} output channels, a fixed size (smaller than the width), "
                             "so its groups cannot grow with it")
        return "vector"
    if grouped:
        raise ValueError(
            f"role: {role!r} does not fit {shape}: its number of groups grows with the width, so each output channel "
            "sums a fixed number of inputs (a fixed fan-in); such a convolution is vector-like: pass role='vector' "
            "or leave role unset"
        )
    return infer_role(in_channels, out_channels, role, param, layer, ("in_channels", "out_channels"))


class _AbcConv(WeightedLayer):
    """The abc part of a convolution: role, exponents, init and the forward multiplier on the weight."""

    _torch_conv: Any  # nn.Conv1d / nn.Conv2d / nn.Conv3d

    def __init__(self, in_channels: int, out_channels: int, kernel_size: Any, stride: Any = 1, padding: Any = 0,
                 dilation: Any = 1, groups: int = 1, bias: bool = True, padding_mode: str = "zeros", device: Any = None,
                 dtype: Any = None, *, role: Optional[str] = None, param: Optional[Parametrization] = None,
                 alpha: float = 1.0, sigma: Optional[float] = None, zero_init: bool = False,
                 fold: Optional[bool] = None) -> None:
        in_channels = validate.positive_int(in_channels, "in_channels")
        out_channels = validate.positive_int(out_channels, "out_channels")
        groups = validate.positive_int(groups, "groups")
        if in_channels % groups or out_channels % groups:
            raise ValueError(f"groups: {groups} must divide in_channels ({in_channels}) and out_channels ({out_channels})")
        if not isinstance(bias, bool):
            raise TypeError(f"bias: expected True or False, got {bias!r}")
        param = Parametrization.require(param)
        role = conv_role(in_channels, out_channels, groups, role, param, type(self).__name__)
        alpha_ = validate.real(alpha, "alpha", zero_ok=False)
        kernel = _kernel(kernel_size, self._torch_conv)
        taps = math.prod(kernel)
        fan_in = in_channels // groups * taps
        # the fan-in at base width: only a width-sized input channel count shrinks with m
        fan_in_base = fan_in / float(param.width_mult) if role in ("hidden", "output") else float(fan_in)
        fold_ = check_fold(fold, "input" if role == "vector" else role)
        sigma_ = 1.0 / math.sqrt(fan_in_base) if sigma is None else validate.real(sigma, "sigma", zero_ok=True)
        config = role_config(param, role, alpha_, sigma_, fold_, _CONV_WIDTH_DIMS[role])
        config.update(fan_in=fan_in, zero_init=bool(zero_init), bias_bound=1.0 / math.sqrt(fan_in_base))
        if role == "output":
            config["_bias_scales"] = UNIT_SCALES
        else:  # vector-like, stored as its effective value (as Linear's bias)
            folded = param.canonical()
            config["bias_bound"] *= folded.init_scale("vector")
            config["_bias_scales"] = scales_for(folded, "vector", (0,))
        self.__dict__.update(config)  # plain numbers, set before torch's __init__ calls reset_parameters
        self._torch_conv.__init__(self, in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias,
                                  padding_mode, device=device, dtype=dtype)

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        wm = self.weight_multiplier
        # the factor goes on the weight: a convolution's kernel has fewer numbers than its input or output
        return self._conv_forward(input, self.weight if wm == 1.0 else self.weight * wm, self.bias)

    def extra_repr(self) -> str:
        return f"{self._torch_conv.extra_repr(self)}, fan_in={self.fan_in}, {self._abc_repr()}"


def _kernel(kernel_size: Any, base: Any) -> Tuple[int, ...]:
    dims = TORCH_CONVS.index(base) + 1
    if isinstance(kernel_size, int) and not isinstance(kernel_size, bool):
        kernel_size = (kernel_size,) * dims
    ks = tuple(kernel_size) if isinstance(kernel_size, (tuple, list)) else ()
    if len(ks) != dims or not all(isinstance(k, int) and not isinstance(k, bool) and k > 0 for k in ks):
        raise ValueError(f"kernel_size: expected a positive int or {dims} positive ints, got {kernel_size!r}")
    return ks


_ARGS_DOC = """

    Args (after torch's own, which keep their meaning):
        role: ``"input"``, ``"hidden"``, ``"output"`` or ``"vector"`` (a
            depthwise / grouped convolution whose groups grow with the width).
            Default: inferred from which channel counts are width-sized, as
            :class:`abcparam.Linear` infers it from its features.
        param: the :class:`~abcparam.Parametrization`.
        alpha: forward-multiplier constant at base width (default 1).
        sigma: init std at base width; default ``1/sqrt(fan_in at base width)``
            with fan-in ``in_channels / groups * prod(kernel_size)``.
        zero_init: initialise the weight to zero.
        fold: store the effective weight (multiplier folded into init and
            learning rate, docs/theory.md section 2); default True for input
            and vector-like convolutions, False otherwise.
    """


class Conv1d(_AbcConv, nn.Conv1d):
    __doc__ = "``nn.Conv1d`` with an abc-parametrization (docs/theory.md section 17)." + _ARGS_DOC
    _torch_conv = nn.Conv1d


class Conv2d(_AbcConv, nn.Conv2d):
    __doc__ = "``nn.Conv2d`` with an abc-parametrization (docs/theory.md section 17)." + _ARGS_DOC
    _torch_conv = nn.Conv2d


class Conv3d(_AbcConv, nn.Conv3d):
    __doc__ = "``nn.Conv3d`` with an abc-parametrization (docs/theory.md section 17)." + _ARGS_DOC
    _torch_conv = nn.Conv3d
