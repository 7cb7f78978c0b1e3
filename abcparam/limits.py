"""Exact infinite-width limits of a 1-hidden-layer linear network trained by SGD (docs/theory.md section 9).

The network is ``f(x) = V^T U x`` with input weights ``U`` (n x d_in) and
readout ``V`` (n x d_out), trained by SGD.  In muP (TP5 Table 8 form, built
from :class:`abcparam.Linear`/:class:`abcparam.Embedding`) the effective
weights start as ``U_0 = s_u G_u`` and ``V_0 = (s_v / n) G_v`` and move with
effective learning rates ``eta_U = k_u n`` and ``eta_V = k_v / n``.  Writing
``U = Omega A`` and ``n V = Omega B`` with ``Omega = [G_u, G_v]``, one SGD step on
a batch with ``chi = dLoss/df`` is exactly ``A <- A - k_u B chi^T X`` and
``B <- B - k_v A X^T chi``, and ``f(x) = B^T (Omega^T Omega / n) A x``.  This
module provides:

- :class:`MuPLimit`: the infinite-width network (``Omega^T Omega / n`` replaced
  by ``I``): deterministic, of width ``d_in + d_out``, whatever ``n``;
- :class:`OmegaNetwork`: the finite network of width ``n`` as the same
  recursion with the sampled ``Omega^T Omega / n`` (the Omega projection);
- :class:`NTKLimit`: the kernel-regime limit of the same network in NTK
  parametrization (features frozen at initialisation; the function trains as
  a linear model ``f = W x`` with ``W_0 = 0``, the centred GP);
- :func:`abcparam_network`: the same finite network built from abcparam's own
  layers, with its wrapped SGD optimizer, started from the same ``G_u, G_v``;
- :class:`LinearMLP` and :class:`LinearLimit`: the same network (with an input
  bias) in TP4's muP form as ordinary ``nn.Module`` s, finite and infinite, for
  any training loop that takes a module (MAML included: docs/theory.md section 16).

All of them share one interface: ``model(x)`` predicts, ``model.step(x, y,
loss)`` takes one SGD step on the batch and returns the loss, and
``model.features(x)`` returns the hidden representation normalised so that
inner products converge as the width grows (``U x / sqrt(n)`` for finite
networks).  Inputs are dense ``(N, d_in)`` float tensors or, with
``one_hot=True``, ``(N,)`` integer token ids.

>>> import torch
>>> cfg = LinearNetConfig(d_in=3, d_out=2, base_width=8, lr=0.1)
>>> limit = MuPLimit(cfg)
>>> x, y = torch.randn(4, 3, dtype=torch.float64), torch.randn(4, 2, dtype=torch.float64)
>>> loss0 = limit.step(x, y); loss1 = limit.step(x, y)
>>> loss1 < loss0
True
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Optional

from . import torch_quiet  # noqa: F401  (torch without the numpy warning)
import torch
from torch import nn

from .layers import Embedding, Linear
from .optim import wrap
from .theory.parametrizations import mup, ntk
from . import validate
from .validate import positive_int as _positive_int

__all__ = [
    "LinearNetConfig", "MuPLimit", "NTKLimit", "OmegaNetwork", "AbcparamNetwork", "abcparam_network", "mse",
    "LinearMLP", "LinearLimit",
]

Loss = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def mse(f: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Half the squared error, averaged over the batch: chi = (f - y) / N."""
    return 0.5 * (f - y).pow(2).sum(-1).mean()


@dataclass(frozen=True)
class LinearNetConfig:
    """The finite network's constants at base width (muP Table 8 form, SGD).

    ``alpha_u``, ``alpha_v`` are the forward-multiplier constants and ``sigma_u``,
    ``sigma_v`` the init stds at base width (defaults: ``1/sqrt(d_in)`` for a
    dense input layer, ``1`` for an embedding, ``1/sqrt(base_width)`` for the
    readout), ``lr`` the base SGD learning rate.
    """

    d_in: int
    d_out: int
    base_width: int = 64
    lr: float = 0.1
    one_hot: bool = False
    alpha_u: float = 1.0
    alpha_v: float = 1.0
    sigma_u: Optional[float] = None
    sigma_v: Optional[float] = None
    dtype: torch.dtype = torch.float64

    def __post_init__(self) -> None:
        check_config(self)

    @property
    def su(self) -> float:
        """s_u: U_0 = s_u G_u."""
        sigma = self.sigma_u if self.sigma_u is not None else (1.0 if self.one_hot else 1.0 / math.sqrt(self.d_in))
        return self.alpha_u * sigma

    @property
    def sv(self) -> float:
        """s_v: V_0 = (s_v / n) G_v (readout a = 1: multiplier alpha_v * n0 / n)."""
        sigma = self.sigma_v if self.sigma_v is not None else 1.0 / math.sqrt(self.base_width)
        return self.alpha_v * sigma * self.base_width

    @property
    def ku(self) -> float:
        """k_u: eta_U = k_u n (input c = -1: stored lr * n / n0, times alpha_u^2)."""
        return self.alpha_u ** 2 * self.lr / self.base_width

    @property
    def kv(self) -> float:
        """k_v: eta_V = k_v / n (readout c = -1, multiplier alpha_v n0 / n)."""
        return self.alpha_v ** 2 * self.lr * self.base_width


def check_config(cfg: Any) -> None:
    """The sizes of a limit's config are positive ints, its rates and multipliers finite positive numbers."""
    for name in ("d_in", "d_out", "base_width"):
        validate.count(getattr(cfg, name), name)
    for name in ("lr", "alpha_u", "alpha_v"):
        validate.number(getattr(cfg, name), name)


def _inputs(cfg: LinearNetConfig, x: torch.Tensor) -> torch.Tensor:
    """Dense (N, d_in) inputs: one-hot rows for token ids."""
    if cfg.one_hot:
        if x.dtype not in (torch.long, torch.int32, torch.int64) or x.dim() != 1:
            raise ValueError(f"x: with one_hot=True, expected a 1-d tensor of token ids, got {x.dtype} of shape {tuple(x.shape)}")
        if x.numel() and (int(x.min()) < 0 or int(x.max()) >= cfg.d_in):
            raise ValueError(f"x: token ids must lie in [0, {cfg.d_in}), got [{int(x.min())}, {int(x.max())}]")
        return nn.functional.one_hot(x, cfg.d_in).to(cfg.dtype)
    if x.dim() != 2 or x.shape[1] != cfg.d_in:
        raise ValueError(f"x: expected shape (N, {cfg.d_in}), got {tuple(x.shape)}")
    return x.to(cfg.dtype)


def output_error(f: torch.Tensor, y: torch.Tensor, loss: Loss) -> "tuple[torch.Tensor, float]":
    f = f.detach().requires_grad_(True)
    value = loss(f, y)
    if value.dim() != 0:
        raise ValueError("loss: must return a scalar")
    (chi,) = torch.autograd.grad(value, f)
    return chi, float(value.detach())


class _CoefficientNetwork:
    """The Omega-coefficient recursion of docs/theory.md section 9; gram = Omega^T Omega / n (or I in the limit)."""

    def __init__(self, cfg: LinearNetConfig, gram: Optional[torch.Tensor]) -> None:
        if not isinstance(cfg, LinearNetConfig):
            raise TypeError(f"cfg: expected a LinearNetConfig, got {type(cfg).__name__}")
        self.cfg = cfg
        D = cfg.d_in + cfg.d_out
        self.A = torch.zeros(D, cfg.d_in, dtype=cfg.dtype)
        self.B = torch.zeros(D, cfg.d_out, dtype=cfg.dtype)
        self.A[: cfg.d_in] = cfg.su * torch.eye(cfg.d_in, dtype=cfg.dtype)
        self.B[cfg.d_in:] = cfg.sv * torch.eye(cfg.d_out, dtype=cfg.dtype)
        self.gram = gram

    @property
    def width(self) -> int:
        """Width of the coefficient network: d_in + d_out."""
        return self.A.shape[0]

    def _GA(self) -> torch.Tensor:
        return self.A if self.gram is None else self.gram @ self.A

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        X = _inputs(self.cfg, x)
        return X @ (self.B.T @ self._GA()).T

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """A x in the limit; U x / sqrt(n) = Omega A x / sqrt(n) for a finite network."""
        X = _inputs(self.cfg, x)
        return X @ self.A.T

    def step(self, x: torch.Tensor, y: torch.Tensor, loss: Loss = mse) -> float:
        X = _inputs(self.cfg, x)
        chi, value = output_error(X @ (self.B.T @ self._GA()).T, y, loss)
        # U <- U - eta_U V chi x^T ; V <- V - eta_V U x chi^T, in coefficients (simultaneous update)
        dA = self.cfg.ku * self.B @ chi.T @ X
        dB = self.cfg.kv * self.A @ X.T @ chi
        self.A -= dA
        self.B -= dB
        return value


class MuPLimit(_CoefficientNetwork):
    """The exact infinite-width muP limit: f(x) = B^T A x, a deterministic network of width d_in + d_out."""

    def __init__(self, cfg: LinearNetConfig) -> None:
        super().__init__(cfg, None)


class OmegaNetwork(_CoefficientNetwork):
    """The finite muP network of width ``width`` as the coefficient recursion with Omega^T Omega / n.

    ``Omega = [G_u, G_v]`` is drawn from ``seed``; :func:`abcparam_network` with the
    same seed builds the same network from abcparam layers.
    """

    def __init__(self, cfg: LinearNetConfig, width: int, seed: int = 0) -> None:
        _positive_int(width, "width")
        Gu, Gv = _gaussians(cfg, int(width), seed)
        self.omega = torch.cat([Gu, Gv], dim=1)
        super().__init__(cfg, self.omega.T @ self.omega / width)
        self.n = int(width)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return _inputs(self.cfg, x) @ (self.omega @ self.A).T / math.sqrt(self.n)


def _gaussians(cfg: LinearNetConfig, width: int, seed: int) -> "tuple[torch.Tensor, torch.Tensor]":
    g = torch.Generator().manual_seed(seed)
    Gu = torch.randn(width, cfg.d_in, generator=g, dtype=cfg.dtype)
    Gv = torch.randn(width, cfg.d_out, generator=g, dtype=cfg.dtype)
    return Gu, Gv


class NTKLimit:
    """The kernel-regime (NTK) limit of the same network in NTK parametrization, trained by SGD.

    Features stay at their initialisation (``features(x)`` is the frozen feature
    map, with inner products ``s_u^2 x . x'``); the function is the linear model
    ``f = W x`` with ``W_0 = 0`` (the centred GP), trained in function space with
    the tangent kernel ``Theta(x, x') = (eta_U |V|^2 + eta_V |U x|^2 / |x|^2) x . x'``,
    where the NTK parametrization gives ``eta_U = lr alpha_u^2``, ``eta_V =
    lr alpha_v^2 n0 / n``, ``V^T V -> s_v^2 / n0`` and ``|U x|^2 -> n s_u^2 |x|^2``.
    """

    def __init__(self, cfg: LinearNetConfig) -> None:
        if not isinstance(cfg, LinearNetConfig):
            raise TypeError(f"cfg: expected a LinearNetConfig, got {type(cfg).__name__}")
        self.cfg = cfg
        self.W = torch.zeros(cfg.d_out, cfg.d_in, dtype=cfg.dtype)
        # U's step moves f through V^T V -> s_v^2 / n0; V's through |U x|^2 / n -> s_u^2 |x|^2
        self.kernel_rate = cfg.lr * (cfg.alpha_u ** 2 * cfg.sv ** 2 / cfg.base_width + cfg.alpha_v ** 2 * cfg.base_width * cfg.su ** 2)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return _inputs(self.cfg, x) @ self.W.T

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.cfg.su * _inputs(self.cfg, x)

    def step(self, x: torch.Tensor, y: torch.Tensor, loss: Loss = mse) -> float:
        X = _inputs(self.cfg, x)
        chi, value = output_error(X @ self.W.T, y, loss)
        self.W -= self.kernel_rate * chi.T @ X
        return value


class AbcparamNetwork(nn.Module):
    """The finite network built from abcparam layers, with its wrapped SGD optimizer (same interface)."""

    def __init__(self, cfg: LinearNetConfig, width: int, seed: int = 0, parametrization: str = "mup") -> None:
        super().__init__()
        if parametrization not in ("mup", "ntk"):
            raise ValueError(f"parametrization: got {parametrization!r}; allowed: 'mup' (Table 8 form) or 'ntk'")
        _positive_int(width, "width")
        self.cfg, self.n = cfg, int(width)
        p = mup(self.n, cfg.base_width, form="table8") if parametrization == "mup" else ntk(self.n, cfg.base_width)
        sigma_u = cfg.su / cfg.alpha_u
        sigma_v = cfg.sv / (cfg.alpha_v * cfg.base_width)
        if cfg.one_hot:
            self.inp: nn.Module = Embedding(cfg.d_in, self.n, param=p, alpha=cfg.alpha_u, sigma=sigma_u, dtype=cfg.dtype)
        else:
            self.inp = Linear(cfg.d_in, self.n, False, role="input", param=p, alpha=cfg.alpha_u, sigma=sigma_u, dtype=cfg.dtype)
        self.out = Linear(self.n, cfg.d_out, False, role="output", param=p, alpha=cfg.alpha_v, sigma=sigma_v, dtype=cfg.dtype)
        Gu, Gv = _gaussians(cfg, self.n, seed)
        with torch.no_grad():  # the same G_u, G_v as OmegaNetwork(cfg, width, seed), at the layers' init std
            self.inp.weight.copy_(self.inp.init_std * (Gu.T if cfg.one_hot else Gu))
            self.out.weight.copy_(self.out.init_std * Gv.T)
        self.optimizer = wrap(torch.optim.SGD(self.parameters(), lr=cfg.lr), self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.cfg.one_hot:
            return self.out(self.inp(x))
        return self.out(self.inp(_inputs(self.cfg, x)))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        h = self.inp(x) if self.cfg.one_hot else self.inp(_inputs(self.cfg, x))
        return h.detach() / math.sqrt(self.n)

    def step(self, x: torch.Tensor, y: torch.Tensor, loss: Loss = mse) -> float:
        self.optimizer.zero_grad(set_to_none=True)
        value = loss(self(x), y)
        value.backward()
        self.optimizer.step()
        return float(value.detach())


def abcparam_network(cfg: LinearNetConfig, width: int, seed: int = 0, parametrization: str = "mup") -> AbcparamNetwork:
    """The finite network of width ``width`` from abcparam layers (muP Table 8 form, or NTK), same G as OmegaNetwork."""
    return AbcparamNetwork(cfg, width, seed, parametrization)


class _LinearNetBase(nn.Module):
    """What the finite network and its limit share: sizes, constants, the input with its bias coordinate."""

    def __init__(self, d_in: int, d_out: int, bias: float, sigma_u: float, sigma_b: float, sigma_v: float,
                 alpha: float, base_width: int) -> None:
        super().__init__()
        self.d_in = _positive_int(d_in, "d_in")
        self.d_out = _positive_int(d_out, "d_out")
        self.base_width = _positive_int(base_width, "base_width")
        self.bias = validate.number(bias, "bias", zero_ok=True)
        self.sigma_u = validate.number(sigma_u, "sigma_u", zero_ok=True)
        self.sigma_b = validate.number(sigma_b, "sigma_b", zero_ok=True)
        self.sigma_v = validate.number(sigma_v, "sigma_v", zero_ok=True)
        self.alpha = validate.number(alpha, "alpha")

    @property
    def fan_in(self) -> int:
        """d_in, plus one coordinate for the input bias when ``bias`` is not 0."""
        return self.d_in + (1 if self.bias else 0)

    def _input_stds(self) -> torch.Tensor:
        """The coefficient of each input coordinate at initialisation: sigma_u, and sigma_b for the bias."""
        s = torch.full((self.fan_in,), self.sigma_u, dtype=torch.float64)
        if self.bias:
            s[-1] = self.sigma_b
        return s

    def augment(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` (N, d_in) with the constant bias coordinate appended (the input bias, docs/theory.md section 16)."""
        if x.dim() < 1 or x.shape[-1] != self.d_in:
            raise ValueError(f"x: expected a last dimension of {self.d_in}, got shape {tuple(x.shape)}")
        if not self.bias:
            return x
        return torch.cat([x, x.new_full(x.shape[:-1] + (1,), self.bias)], dim=-1)

    def extra_repr(self) -> str:
        return (f"d_in={self.d_in}, d_out={self.d_out}, bias={self.bias:g}, sigma_u={self.sigma_u:g}, "
                f"sigma_b={self.sigma_b:g}, sigma_v={self.sigma_v:g}, alpha={self.alpha:g}, base_width={self.base_width}")


class LinearMLP(_LinearNetBase):
    """The finite 1-hidden-layer linear network ``x -> V^T U [x, bias]`` in muP (TP4 form), from abcparam layers.

    ``inp`` is an :class:`abcparam.Linear` input layer (stored unfolded, so its
    stored weight, like the readout's, has entries of size n^-1/2 and its
    gradient a norm that converges as the width grows) and ``out`` the readout.
    In this form SGD trains every tensor at the same learning rate (c = 0), so
    a plain ``torch.optim.SGD`` (or one wrapped by :func:`abcparam.wrap`, which
    changes nothing here), plain gradient clipping and a MAML inner step at one
    step size are all width-consistent: their limit is :class:`LinearLimit`.
    The input bias is one more input coordinate, the constant ``bias``
    (docs/theory.md section 16); its column starts at std ``sigma_b * m^-1/2``.

    >>> net = LinearMLP(784, 5, width=64)
    >>> net(torch.zeros(3, 784)).shape
    torch.Size([3, 5])
    """

    def __init__(self, d_in: int, d_out: int, width: int, *, bias: float = 1.0, sigma_u: float = 1.0,
                 sigma_b: float = 0.0, sigma_v: float = 1.0, alpha: float = 1.0, base_width: int = 1,
                 dtype: Optional[torch.dtype] = None) -> None:
        super().__init__(d_in, d_out, bias, sigma_u, sigma_b, sigma_v, alpha, base_width)
        self.width = _positive_int(width, "width")
        p = mup(self.width, self.base_width)
        self.inp = Linear(self.fan_in, self.width, False, role="input", param=p, sigma=self.sigma_u, fold=False,
                          dtype=dtype)
        self.out = Linear(self.width, self.d_out, False, role="output", param=p, alpha=self.alpha,
                          sigma=self.sigma_v, dtype=dtype)
        if self.bias:  # the bias column's own std (the layers drew every column at sigma_u)
            with torch.no_grad():
                self.inp.weight[:, -1].normal_(0.0, self.sigma_b / math.sqrt(self.width / self.base_width))

    def multipliers(self) -> "tuple[float, float]":
        """The forward multipliers (M_u, M_v): ``f = M_v out.weight (M_u inp.weight x)``."""
        return self.inp.weight_multiplier, self.out.weight_multiplier

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.inp(self.augment(x)))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The hidden representation over sqrt(width): its inner products converge to :meth:`LinearLimit.features`'."""
        return self.inp(self.augment(x)) / math.sqrt(self.width)


class LinearLimit(_LinearNetBase):
    """The exact infinite-width muP limit of :class:`LinearMLP`: a plain linear network of width fan_in + d_out.

    docs/theory.md sections 9 and 16: every column of the finite network's
    weights stays in the span of the ``fan_in + d_out`` Gaussian vectors it
    started from, so with ``inp.weight = m^-1/2 Omega P`` and ``out.weight^T =
    m^-1/2 Omega Q`` the finite network is ``f = alpha n0 Q^T (Omega^T Omega / n) P x``
    and its SGD step moves ``P`` and ``Q`` by amounts in which ``Omega`` enters
    only through ``Omega^T Omega / n``.  Replacing that by its limit ``I`` gives
    this module: ``inp.weight = sqrt(n0) P`` (starting at ``sqrt(n0) [diag(sigma_u,
    ..., sigma_b); 0]``), ``out.weight = sqrt(n0) Q^T`` (starting at ``sqrt(n0) [0,
    sigma_v I]``), ``f = alpha * out(inp(x))``.  Its gradients have the limits of
    the finite network's gradient norms, so it trains with the same *unscaled*
    SGD, clipping, schedule and MAML inner step: any loop that trains a
    :class:`LinearMLP` trains this (``torch.func.functional_call`` included), and
    finite networks converge to it at O(n^-1/2) (tests/test_maml.py).

    >>> lim = LinearLimit(784, 5)
    >>> lim.inp.weight.shape, lim.out.weight.shape
    (torch.Size([790, 785]), torch.Size([5, 790]))
    >>> float(lim(torch.rand(2, 784)).detach().abs().max())  # f_0 = 0 exactly: the readout starts orthogonal to the features
    0.0
    """

    def __init__(self, d_in: int, d_out: int, *, bias: float = 1.0, sigma_u: float = 1.0, sigma_b: float = 0.0,
                 sigma_v: float = 1.0, alpha: float = 1.0, base_width: int = 1,
                 dtype: Optional[torch.dtype] = None) -> None:
        super().__init__(d_in, d_out, bias, sigma_u, sigma_b, sigma_v, alpha, base_width)
        D = self.fan_in + self.d_out
        self.inp = nn.Linear(self.fan_in, D, bias=False, dtype=dtype)
        self.out = nn.Linear(D, self.d_out, bias=False, dtype=dtype)
        self.reset_parameters()

    @property
    def width(self) -> int:
        """The limit's width: fan_in + d_out (whatever the finite width it stands for)."""
        return self.fan_in + self.d_out

    def reset_parameters(self) -> None:
        """The deterministic start: identity blocks times sqrt(base_width) and the sigmas."""
        root_n0 = math.sqrt(self.base_width)
        with torch.no_grad():
            self.inp.weight.zero_()
            self.inp.weight[: self.fan_in].copy_(torch.diag(root_n0 * self._input_stds()))
            self.out.weight.zero_()
            self.out.weight[:, self.fan_in:].copy_(root_n0 * self.sigma_v * torch.eye(self.d_out))

    def multipliers(self) -> "tuple[float, float]":
        """The forward multipliers (M_u, M_v) = (1, alpha): ``f = alpha out.weight (inp.weight x)``."""
        return 1.0, self.alpha

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.alpha * self.out(self.inp(self.augment(x)))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """``P x``: the limit of the finite network's hidden representation's inner products (over the width)."""
        return self.inp(self.augment(x)) / math.sqrt(self.base_width)

    def sample(self, width: int, seed: int = 0) -> LinearMLP:
        """A finite :class:`LinearMLP` of ``width`` whose weights are this limit's projected by a Gaussian Omega.

        ``inp.weight = Omega inp.weight_limit / sqrt(width)``, ``out.weight = out.weight_limit Omega^T /
        sqrt(width)`` with ``Omega`` (width x (fan_in + d_out)) drawn from ``seed``: at initialisation this
        is the finite network's own init distribution, coupled to the limit; from a trained limit it is the
        finite network whose coefficients are the limit's.
        """
        net = LinearMLP(self.d_in, self.d_out, width, bias=self.bias, sigma_u=self.sigma_u, sigma_b=self.sigma_b,
                        sigma_v=self.sigma_v, alpha=self.alpha, base_width=self.base_width,
                        dtype=self.inp.weight.dtype)
        g = torch.Generator().manual_seed(seed)
        omega = torch.randn(net.width, self.width, generator=g, dtype=torch.float64)
        root_n = math.sqrt(net.width)
        with torch.no_grad():
            net.inp.weight.copy_((omega @ self.inp.weight.double() / root_n).to(net.inp.weight.dtype))
            net.out.weight.copy_((self.out.weight.double() @ omega.T / root_n).to(net.out.weight.dtype))
        return net


def check_supported(*, nonlinearity: Any = None, optimizer: Any = "sgd", depth: int = 1) -> None:
    """Refuse settings outside docs/theory.md section 9 with a message saying what is supported."""
    if nonlinearity not in (None, "linear", "identity"):
        raise ValueError(f"nonlinearity: the exact limit exists for linear networks only (docs/theory.md section 9), got {nonlinearity!r}")
    if str(optimizer).lower() not in ("sgd",):
        raise ValueError(f"optimizer: the exact limit is computed for SGD only, got {optimizer!r}; Adam's limit is not a finite recursion")
    if depth != 1:
        raise ValueError(f"depth: the exact limit is for one hidden layer (x -> V^T U x), got depth {depth}")
