"""Norm layers whose gains and biases are vector-like (docs/theory.md section 7).

:class:`LayerNorm`, :class:`RMSNorm`, :class:`BatchNorm1d` / ``2d`` / ``3d`` and
:class:`GroupNorm` are torch's, with the same arguments,
forward and state_dict, plus the width factors :func:`abcparam.wrap` reads:
their gain and bias train like the input layer's bias (the input layer's
exponents, stored as effective values: section 7).  Their initialisation (gain
1, bias 0) does not change with width.  Under Adam-like optimizers in muP that
is the base learning rate; under SGD it is not (the gradient of a gain shrinks
with width), which is why torch's own norms, owned by no abcparam layer, are
named by ``wrap``'s warning.

>>> import abcparam
>>> ln = abcparam.LayerNorm(256, param=abcparam.mup(256, 64))
>>> ln.abc_scales()["weight"].lr("sgd"), ln.abc_scales()["weight"].lr("adam")
(4.0, 1.0)
"""

from __future__ import annotations

from typing import Any, Dict, Optional

from . import torch_quiet  # noqa: F401  (torch without the numpy warning)
from torch import nn

from .layers import ParamScales, scales_for
from .theory.parametrizations import Parametrization

__all__ = ["LayerNorm", "RMSNorm", "BatchNorm1d", "BatchNorm2d", "BatchNorm3d", "GroupNorm", "CHANNEL_NORMS", "TORCH_NORMS"]

# torch's norms with one gain (and bias) per channel, and every torch norm
CHANNEL_NORMS = (nn.modules.batchnorm._BatchNorm, nn.GroupNorm, nn.modules.instancenorm._InstanceNorm)
TORCH_NORMS = CHANNEL_NORMS + (nn.LayerNorm,) + ((nn.RMSNorm,) if hasattr(nn, "RMSNorm") else ())


class _VectorLike:
    """The width factors of a norm's gain and bias: vector-like, stored as effective values."""

    def _setup(self, param: Any) -> None:
        p = Parametrization.require(param)
        self.param_name = p.name
        self.width, self.base_width = p.width, p.base_width
        self._vector_scales = scales_for(p.canonical(), "vector", (0,))

    def abc_scales(self) -> Dict[str, ParamScales]:
        """Learning-rate and epsilon factors per parameter name, for :func:`abcparam.wrap`."""
        return {name: self._vector_scales for name in ("weight", "bias") if getattr(self, name, None) is not None}


class LayerNorm(_VectorLike, nn.LayerNorm):
    """``nn.LayerNorm`` with vector-like gain and bias (``param`` required; everything else as torch's)."""

    def __init__(self, normalized_shape: Any, eps: float = 1e-5, elementwise_affine: bool = True, bias: bool = True, *,
                 param: Optional[Parametrization] = None, device: Any = None, dtype: Any = None) -> None:
        self._setup(param)
        super().__init__(normalized_shape, eps, elementwise_affine, bias, device=device, dtype=dtype)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, param={self.param_name}, vector-like"


_TorchRMSNorm = getattr(nn, "RMSNorm", None)  # torch >= 2.4


if _TorchRMSNorm is not None:

    class RMSNorm(_VectorLike, _TorchRMSNorm):  # type: ignore[misc, valid-type]
        """``nn.RMSNorm`` with a vector-like gain (``param`` required; everything else as torch's)."""

        def __init__(self, normalized_shape: Any, eps: Optional[float] = None, elementwise_affine: bool = True, *,
                     param: Optional[Parametrization] = None, device: Any = None, dtype: Any = None) -> None:
            self._setup(param)
            super().__init__(normalized_shape, eps, elementwise_affine, device=device, dtype=dtype)

        def extra_repr(self) -> str:
            return f"{super().extra_repr()}, param={self.param_name}, vector-like"

else:  # pragma: no cover - old torch

    class RMSNorm(nn.Module):  # type: ignore[no-redef]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            raise RuntimeError("abcparam.RMSNorm needs torch >= 2.4 (nn.RMSNorm)")


class _BatchNorm(_VectorLike):
    """A batch norm's gain and bias, one per channel: vector-like (docs/theory.md section 17)."""

    _torch_norm: Any

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: Optional[float] = 0.1, affine: bool = True,
                 track_running_stats: bool = True, *, param: Optional[Parametrization] = None, device: Any = None,
                 dtype: Any = None) -> None:
        self._setup(param)
        self._torch_norm.__init__(self, num_features, eps, momentum, affine, track_running_stats, device=device, dtype=dtype)

    def extra_repr(self) -> str:
        return f"{self._torch_norm.extra_repr(self)}, param={self.param_name}, vector-like"


class BatchNorm1d(_BatchNorm, nn.BatchNorm1d):
    """``nn.BatchNorm1d`` with a vector-like gain and bias (``param`` required; everything else as torch's)."""

    _torch_norm = nn.BatchNorm1d


class BatchNorm2d(_BatchNorm, nn.BatchNorm2d):
    """``nn.BatchNorm2d`` with a vector-like gain and bias (``param`` required; everything else as torch's).

    >>> import abcparam
    >>> bn = abcparam.BatchNorm2d(128, param=abcparam.mup(128, 32))
    >>> bn.abc_scales()["weight"].lr("sgd"), bn.abc_scales()["bias"].lr("adam")
    (4.0, 1.0)
    """

    _torch_norm = nn.BatchNorm2d


class BatchNorm3d(_BatchNorm, nn.BatchNorm3d):
    """``nn.BatchNorm3d`` with a vector-like gain and bias (``param`` required; everything else as torch's)."""

    _torch_norm = nn.BatchNorm3d


class GroupNorm(_VectorLike, nn.GroupNorm):
    """``nn.GroupNorm`` with a vector-like gain and bias per channel (``param`` required; everything else as torch's)."""

    def __init__(self, num_groups: int, num_channels: int, eps: float = 1e-5, affine: bool = True, *,
                 param: Optional[Parametrization] = None, device: Any = None, dtype: Any = None) -> None:
        self._setup(param)
        super().__init__(num_groups, num_channels, eps, affine, device=device, dtype=dtype)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, param={self.param_name}, vector-like"
