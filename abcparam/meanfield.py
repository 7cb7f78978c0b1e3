"""The infinite-width limit of a nonlinear network with one hidden layer (docs/theory.md section 13).

The network is abcparam's mean-field (muP, L = 1) network with a smooth
nonlinearity, trained by SGD:

    f(x) = alpha_v * (n0 / n) * sum_i v_i phi(w_i . x + beta_i)

(input layer ``w`` with bias ``beta``, readout ``v`` with multiplier
``alpha_v / m``; :func:`abcparam.mean_field`).  One SGD step moves every hidden
unit (w_i, beta_i, v_i) by an amount that depends only on the unit itself and
on the output error chi = dLoss/df:

    v    <- v    - eta alpha_v sum_k chi_k phi(h_k)
    w    <- w    - eta alpha_v alpha_u^2 sum_k (chi_k . v) phi'(h_k) x_k
    beta <- beta - eta alpha_v sum_k (chi_k . v) phi'(h_k)

and chi is deterministic in the limit.  So the infinite-width network is
``f(x) = alpha_v n0 E[v phi(w . x + beta)]``, an expectation over the initial
weights of a deterministic trajectory per unit: a finite network is that
expectation under the empirical measure of its n random units, and the limit is
the same recursion over a quadrature rule's nodes ("particles") with its
weights.  :class:`MeanFieldLimit` computes it; :class:`KernelLimit` is the NTK
limit of the same network (hidden units frozen, training is kernel regression
with the tangent kernel at initialisation, computed by the same rule);
:func:`mean_field_network` builds the finite network from abcparam layers with
:func:`abcparam.wrap`.  All share the interface of :mod:`abcparam.limits`:
``model(x)``, ``model.step(x, y, loss)``, ``model.features(x)``.

The rule: scrambled Sobol points mapped through the initial distributions
(randomised quasi-Monte Carlo, the default; the spread over independent
scramblings is the error estimate), a Gauss-Hermite tensor grid, or plain Monte
Carlo.  Every rule is symmetrised in v (each node with its mirror -v), so
f_0 = 0 exactly, as the expectation is.

Supported: tanh, GELU and sigmoid.  ReLU is refused: phi' jumps at 0, so a
unit's trajectory is discontinuous in its initial weights along the kink and a
quasi-Monte Carlo rule loses its fast convergence there (it falls back to about
the Monte Carlo rate, N^-1/2).  SGD only: plain SGD is the optimizer whose
per-unit update is a function of the unit and chi alone *and* whose limit
needs no per-unit normalisation (SGD with momentum also qualifies, with a
momentum buffer per particle; it is not implemented).  The integral has
dimension d_in (+1 with a bias) + d_out; quasi-Monte Carlo loses its edge as
that grows, and beyond 8 dimensions the rule is refused.

>>> import torch
>>> cfg = MeanFieldConfig(d_in=1, d_out=1, base_width=16, lr=0.05)
>>> limit = MeanFieldLimit(cfg, points=2 ** 10, scramblings=2)
>>> x = torch.linspace(-2, 2, 8, dtype=torch.float64)[:, None]
>>> float(limit(x).abs().max())          # f_0 = 0 exactly (the rule is symmetric in v)
0.0
>>> l0 = limit.step(x, torch.sin(2 * x)); l1 = limit.step(x, torch.sin(2 * x)); l1 < l0
True
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Tuple

from . import validate
from . import torch_quiet  # noqa: F401  (torch without the numpy warning)
import torch
from torch import nn

from .layers import Linear
from .limits import Loss, check_config, output_error, mse
from .optim import wrap
from .theory.parametrizations import mean_field, ntk
from .validate import positive_int as _positive_int

__all__ = ["MeanFieldConfig", "MeanFieldLimit", "KernelLimit", "MeanFieldNetwork", "mean_field_network", "NONLINEARITIES",
           "RULES", "MAX_DIMENSION"]

MAX_DIMENSION = 8
RULES = ("sobol", "gauss-hermite", "mc")


def _gelu_grad(h: torch.Tensor) -> torch.Tensor:
    cdf = 0.5 * (1 + torch.erf(h / math.sqrt(2)))
    return cdf + h * torch.exp(-0.5 * h * h) / math.sqrt(2 * math.pi)


# name: (phi, phi')
NONLINEARITIES: Dict[str, Tuple[Callable[[torch.Tensor], torch.Tensor], Callable[[torch.Tensor], torch.Tensor]]] = {
    "tanh": (torch.tanh, lambda h: 1 - torch.tanh(h) ** 2),
    "gelu": (lambda h: nn.functional.gelu(h), _gelu_grad),
    "sigmoid": (torch.sigmoid, lambda h: torch.sigmoid(h) * (1 - torch.sigmoid(h))),
}
_ACTIVATIONS = {"tanh": nn.Tanh, "gelu": nn.GELU, "sigmoid": nn.Sigmoid}


@dataclass(frozen=True)
class MeanFieldConfig:
    """The finite network's constants at base width (mean-field preset, SGD; docs/theory.md section 13).

    ``alpha_u``, ``alpha_v``: forward-multiplier constants of the input layer and
    the readout; the input weights start as ``N(0, (alpha_u / sqrt(d_in))^2)``
    and their bias uniform in ``+-1/sqrt(d_in)`` (``nn.Linear``'s), the readout
    as ``N(0, 1/n0)`` (``n0 = base_width``), as :class:`abcparam.Linear` draws
    them; ``lr`` is the base SGD rate.  The readout has no bias (a random bias
    of order one would keep the limit random).
    """

    d_in: int
    d_out: int
    base_width: int = 64
    lr: float = 0.1
    nonlinearity: str = "tanh"
    bias: bool = True
    alpha_u: float = 1.0
    alpha_v: float = 1.0
    dtype: torch.dtype = torch.float64

    def __post_init__(self) -> None:
        check_config(self)
        if self.nonlinearity == "relu":
            raise ValueError(
                "nonlinearity: 'relu' is not supported: its derivative jumps at 0, so a unit's trajectory is discontinuous "
                "in its initial weights and the quadrature converges only at the Monte Carlo rate; use 'gelu' (a smooth "
                "ReLU), 'tanh' or 'sigmoid'"
            )
        validate.choice(self.nonlinearity, "nonlinearity", NONLINEARITIES)
        if self.dtype != torch.float64:
            raise ValueError(
                f"dtype: the limit is computed in float64 (got {self.dtype}): its quadrature errors reach 1e-5 and a "
                "float32 sum over 2^16 particles loses that precision"
            )
        if not isinstance(self.bias, bool):
            raise TypeError(f"bias: expected True or False, got {self.bias!r}")
        if self.dimension > MAX_DIMENSION:
            raise ValueError(
                f"d_in, d_out: the limit is an integral over d_in{' + 1' if self.bias else ''} + d_out = {self.dimension} "
                f"dimensions; quasi-Monte Carlo rules converge slowly beyond {MAX_DIMENSION} (their error grows like "
                "log(N)^dim / N), so this is refused: use a finite width instead"
            )

    @property
    def dimension(self) -> int:
        """The dimension of the integral: d_in (+1 with a bias) + d_out."""
        return self.d_in + int(self.bias) + self.d_out

    @property
    def sigma_w(self) -> float:
        return self.alpha_u / math.sqrt(self.d_in)

    @property
    def bias_bound(self) -> float:
        return 1.0 / math.sqrt(self.d_in)

    @property
    def sigma_v(self) -> float:
        return 1.0 / math.sqrt(self.base_width)

    @property
    def scale(self) -> float:
        """f = scale * E[v phi(h)]: alpha_v * n0 (the readout's multiplier alpha_v / m times n)."""
        return self.alpha_v * self.base_width


def _inputs(cfg: MeanFieldConfig, x: torch.Tensor) -> torch.Tensor:
    if not isinstance(x, torch.Tensor) or x.dim() != 2 or x.shape[1] != cfg.d_in:
        raise ValueError(f"x: expected a tensor of shape (N, {cfg.d_in}), got {getattr(x, 'shape', type(x).__name__)}")
    return x.to(cfg.dtype)


def _nodes(cfg: MeanFieldConfig, rule: str, points: int, seed: int) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(w, beta, v, weights) of a quadrature rule for the initial distribution, symmetrised in v."""
    validate.choice(rule, "rule", RULES)
    D = cfg.dimension
    g = torch.Generator().manual_seed(seed)
    if rule == "gauss-hermite":
        # points per axis: Hermite nodes for the Gaussian coordinates, Legendre for the uniform bias
        herm_x, herm_w = _hermite(points)
        leg_x, leg_w = _legendre(points)
        axes = []
        for k in range(D):
            is_bias = cfg.bias and k == cfg.d_in
            axes.append((leg_x, leg_w) if is_bias else (herm_x, herm_w))
        grids = torch.meshgrid(*[a[0] for a in axes], indexing="ij")
        wgrids = torch.meshgrid(*[a[1] for a in axes], indexing="ij")
        z = torch.stack([gr.reshape(-1) for gr in grids], dim=1)
        weights = torch.ones(z.shape[0], dtype=torch.float64)
        for wg in wgrids:
            weights = weights * wg.reshape(-1)
        u = None
    else:
        if rule == "sobol":
            engine = torch.quasirandom.SobolEngine(D, scramble=True, seed=int(torch.randint(0, 2 ** 31 - 1, (1,), generator=g)))
            u = engine.draw(points, dtype=torch.float64)
        else:
            u = torch.rand(points, D, generator=g, dtype=torch.float64)
        u = u.clamp(1e-12, 1 - 1e-12)
        z = math.sqrt(2) * torch.erfinv(2 * u - 1)  # standard normal
        weights = torch.full((points,), 1.0 / points, dtype=torch.float64)
    w = cfg.sigma_w * z[:, : cfg.d_in]
    if cfg.bias:
        col = cfg.d_in
        if rule == "gauss-hermite":
            beta = cfg.bias_bound * z[:, col]  # Legendre nodes on [-1, 1]
        else:
            beta = cfg.bias_bound * (2 * u[:, col] - 1)  # type: ignore[index]
    else:
        beta = torch.zeros(z.shape[0], dtype=torch.float64)
    v = cfg.sigma_v * z[:, D - cfg.d_out:]
    # symmetrise in v: every node also with -v (f_0 = 0 exactly, as E[v] = 0 makes it)
    w, beta, v = torch.cat([w, w]), torch.cat([beta, beta]), torch.cat([v, -v])
    weights = torch.cat([weights, weights]) / 2
    return w, beta, v, weights


def _hermite(q: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """Nodes and weights of q-point Gauss-Hermite quadrature for the standard normal (Golub-Welsch)."""
    k = torch.arange(1, q, dtype=torch.float64)
    J = torch.diag(torch.sqrt(k), 1) + torch.diag(torch.sqrt(k), -1)
    x, vecs = torch.linalg.eigh(J)
    return x, vecs[0] ** 2


def _legendre(q: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """Nodes and weights of q-point Gauss-Legendre quadrature for the uniform distribution on [-1, 1]."""
    k = torch.arange(1, q, dtype=torch.float64)
    J = torch.diag(k / torch.sqrt(4 * k * k - 1), 1) + torch.diag(k / torch.sqrt(4 * k * k - 1), -1)
    x, vecs = torch.linalg.eigh(J)
    return x, vecs[0] ** 2


def _check_rule(points: int, scramblings: int, rule: str) -> None:
    _positive_int(points, "points")
    _positive_int(scramblings, "scramblings")
    validate.choice(rule, "rule", RULES)
    if rule == "gauss-hermite" and scramblings != 1:
        raise ValueError("scramblings: a Gauss-Hermite grid is deterministic; use scramblings=1 (its error estimate is a finer grid)")


class MeanFieldLimit:
    """The infinite-width limit of the mean-field network (docs/theory.md section 13), by quadrature.

    Args:
        cfg: the network's constants (:class:`MeanFieldConfig`).
        points: nodes per rule (a power of 2 for ``"sobol"``; per axis for
            ``"gauss-hermite"``, so points^dimension in all).
        rule: ``"sobol"`` (scrambled, randomised QMC; default),
            ``"gauss-hermite"`` or ``"mc"``.
        scramblings: independent randomisations of the rule, evaluated side by
            side; ``model(x)`` is their mean and :meth:`error` the standard
            error of that mean (randomised QMC's error estimate).
        seed: seed of the randomisations.
    """

    def __init__(self, cfg: MeanFieldConfig, points: int = 2 ** 14, *, rule: str = "sobol", scramblings: int = 4,
                 seed: int = 0) -> None:
        if not isinstance(cfg, MeanFieldConfig):
            raise TypeError(f"cfg: expected a MeanFieldConfig, got {type(cfg).__name__}")
        _check_rule(points, scramblings, rule)
        if rule == "sobol" and points & (points - 1):
            raise ValueError(f"points: Sobol points balance only in powers of 2, got {points}; use e.g. {2 ** round(math.log2(points))}")
        self.cfg = cfg
        self.phi, self.dphi = NONLINEARITIES[cfg.nonlinearity]
        parts = [_nodes(cfg, rule, points, seed + 7919 * k) for k in range(scramblings)]
        self.w = torch.stack([p[0] for p in parts])          # (K, N, d_in)
        self.beta = torch.stack([p[1] for p in parts])       # (K, N)
        self.v = torch.stack([p[2] for p in parts])          # (K, N, d_out)
        self.weights = torch.stack([p[3] for p in parts])    # (K, N)
        self.w0, self.beta0 = self.w.clone(), self.beta.clone()

    @property
    def particles(self) -> int:
        return self.w.shape[1]

    def _h(self, X: torch.Tensor) -> torch.Tensor:
        return torch.matmul(self.w, X.T) + self.beta[..., None]  # (K, N, batch)

    def _f(self, act: torch.Tensor) -> torch.Tensor:
        """scale * sum_n weight_n v_n phi(h_n): (K, batch, d_out) from the activations (K, N, batch)."""
        # the two halves (nodes with v, and their mirrors with -v) summed apart: at init they cancel exactly
        half = self.v.shape[1] // 2
        wa = (act * self.weights[..., None]).transpose(1, 2)
        return self.cfg.scale * (torch.matmul(wa[..., :half], self.v[:, :half]) + torch.matmul(wa[..., half:], self.v[:, half:]))

    def per_rule(self, x: torch.Tensor) -> torch.Tensor:
        """f(x) under each randomisation of the rule: (scramblings, batch, d_out)."""
        return self._f(self.phi(self._h(_inputs(self.cfg, x))))

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.per_rule(x).mean(0)

    def error(self, x: torch.Tensor) -> torch.Tensor:
        """Standard error of ``model(x)`` from the spread over the rule's randomisations (0 for one randomisation)."""
        f = self.per_rule(x)
        if f.shape[0] < 2:
            return torch.zeros_like(f[0])
        return f.std(0) / math.sqrt(f.shape[0])

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """phi(h(x)) per particle, scaled by sqrt(weight) so that inner products are E[phi(h(x)) phi(h(x'))]
        (first randomisation): (batch, particles)."""
        X = _inputs(self.cfg, x)
        return (self.phi(self._h(X))[0] * self.weights[0, :, None].sqrt()).T

    def feature_movement(self, x: torch.Tensor) -> float:
        """RMS over the batch of the change of the pre-activations since init, E[(h_t(x) - h_0(x))^2]^(1/2)."""
        X = _inputs(self.cfg, x)
        h0 = torch.matmul(self.w0, X.T) + self.beta0[..., None]
        d2 = ((self._h(X) - h0) ** 2 * self.weights[..., None]).sum(1)
        return float(d2.mean().sqrt())

    def step(self, x: torch.Tensor, y: torch.Tensor, loss: Loss = mse) -> float:
        """One SGD step on the batch (the same chi for every randomisation: each computes its own)."""
        X = _inputs(self.cfg, x)
        h = self._h(X)                                      # (K, N, B)
        act, dact = self.phi(h), self.dphi(h)
        f = self._f(act)                                    # (K, B, O)
        chis, values = [], []
        for k in range(f.shape[0]):
            chi, value = output_error(f[k], y.to(self.cfg.dtype), loss)
            chis.append(chi)
            values.append(value)
        chi = torch.stack(chis)                             # (K, B, O)
        rate = self.cfg.lr * self.cfg.alpha_v
        g = torch.matmul(self.v, chi.transpose(1, 2)) * dact   # (chi . v) phi'(h): (K, N, B)
        dv = torch.matmul(act, chi)                            # (K, N, O)
        dw = torch.matmul(g, X)                                # (K, N, d_in)
        db = g.sum(-1)
        self.v -= rate * dv
        self.w -= rate * self.cfg.alpha_u ** 2 * dw  # the input layer's multiplier alpha_u enters its effective rate twice
        if self.cfg.bias:
            self.beta -= rate * db
        return sum(values) / len(values)


class KernelLimit:
    """The NTK limit of the same network (docs/theory.md section 13): hidden units frozen at initialisation,
    training is kernel regression in function space with the tangent kernel at init,

        Theta(x, x') = lr alpha_v^2 [n0 E[phi(h) phi(h')] + E[|g|^2 phi'(h) phi'(h')] (alpha_u^2 x . x' + 1)],

    g ~ N(0, I) the readout's entries in units of its base-width scale, computed by the same quadrature (abcparam's
    NTK preset: readout multiplier alpha_v m^(-1/2) on entries N(0, 1/n0), every stored tensor at rate ``lr``;
    ``f_0`` is the centred GP: 0).  ``f_t(x) = -sum_k Theta(x, x_k) c_k`` over every training point seen."""

    def __init__(self, cfg: MeanFieldConfig, points: int = 2 ** 14, *, rule: str = "sobol", seed: int = 0) -> None:
        if not isinstance(cfg, MeanFieldConfig):
            raise TypeError(f"cfg: expected a MeanFieldConfig, got {type(cfg).__name__}")
        _check_rule(points, 1, rule)
        self.cfg = cfg
        self.phi, self.dphi = NONLINEARITIES[cfg.nonlinearity]
        w, beta, v, weights = _nodes(cfg, rule, points, seed)
        # NTK parametrization: the readout entries are Theta(1) (v ~ N(0, alpha_v^2)); its multiplier 1/sqrt(n)
        self.w, self.beta, self.weights = w, beta, weights
        self.g2 = (v * math.sqrt(cfg.base_width)).pow(2).sum(-1)  # |g|^2 per node, g ~ N(0, I)
        self.points: List[torch.Tensor] = []
        self._point_parts: List[Tuple[torch.Tensor, torch.Tensor]] = []
        self.coef: List[torch.Tensor] = []

    def _parts(self, X: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        h = X @ self.w.T + self.beta
        return self.phi(h), self.dphi(h)

    def _kernel(self, X: torch.Tensor, px: Tuple[torch.Tensor, torch.Tensor], Z: torch.Tensor,
                pz: Tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        cfg = self.cfg
        k_v = cfg.base_width * (px[0] * self.weights) @ pz[0].T
        k_w = (px[1] * self.weights * self.g2) @ pz[1].T
        extra = cfg.alpha_u ** 2 * X @ Z.T + (1.0 if cfg.bias else 0.0)
        return cfg.alpha_v ** 2 * (k_v + k_w * extra)

    def kernel(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """The tangent kernel Theta(x, z) per unit learning rate: (len(x), len(z))."""
        X, Z = _inputs(self.cfg, x), _inputs(self.cfg, z)
        return self._kernel(X, self._parts(X), Z, self._parts(Z))

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        X = _inputs(self.cfg, x)
        out = torch.zeros(X.shape[0], self.cfg.d_out, dtype=self.cfg.dtype)
        if self.points:
            px = self._parts(X)
            for pts, parts, c in zip(self.points, self._point_parts, self.coef):
                out -= self.cfg.lr * self._kernel(X, px, pts, parts) @ c
        return out

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """phi(h(x)) per particle at initialisation (frozen), scaled like :meth:`MeanFieldLimit.features`."""
        X = _inputs(self.cfg, x)
        return self.phi(X @ self.w.T + self.beta) * self.weights.sqrt()

    def feature_movement(self, x: torch.Tensor) -> float:
        """0: in the kernel limit the hidden units do not move."""
        _inputs(self.cfg, x)
        return 0.0

    def step(self, x: torch.Tensor, y: torch.Tensor, loss: Loss = mse) -> float:
        X = _inputs(self.cfg, x)
        chi, value = output_error(self(X), y.to(self.cfg.dtype), loss)
        for k, pts in enumerate(self.points):  # a batch seen before: its coefficients accumulate
            if pts.shape == X.shape and torch.equal(pts, X):
                self.coef[k] = self.coef[k] + chi
                return value
        self.points.append(X.clone())
        self._point_parts.append(self._parts(X))
        self.coef.append(chi)
        return value


class MeanFieldNetwork(nn.Module):
    """The finite network of width ``width`` from abcparam layers (mean-field preset, or NTK), with its wrapped SGD."""

    def __init__(self, cfg: MeanFieldConfig, width: int, seed: int = 0, parametrization: str = "mean_field") -> None:
        super().__init__()
        if not isinstance(cfg, MeanFieldConfig):
            raise TypeError(f"cfg: expected a MeanFieldConfig, got {type(cfg).__name__}")
        if parametrization not in ("mean_field", "ntk"):
            raise ValueError(f"parametrization: got {parametrization!r}; allowed: 'mean_field' or 'ntk'")
        self.cfg, self.n = cfg, _positive_int(width, "width")
        p = mean_field(self.n, cfg.base_width) if parametrization == "mean_field" else ntk(self.n, cfg.base_width)
        torch.manual_seed(seed)
        self.inp = Linear(cfg.d_in, self.n, cfg.bias, role="input", param=p, alpha=cfg.alpha_u, dtype=cfg.dtype)
        self.act = _ACTIVATIONS[cfg.nonlinearity]()
        self.out = Linear(self.n, cfg.d_out, False, role="output", param=p, alpha=cfg.alpha_v, dtype=cfg.dtype)
        self.optimizer = wrap(torch.optim.SGD(self.parameters(), lr=cfg.lr), self)
        self._h0: Optional[Tuple[torch.Tensor, torch.Tensor]] = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.act(self.inp(_inputs(self.cfg, x))))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """phi(h(x)) / sqrt(n): inner products converge to the limit's."""
        with torch.no_grad():
            return self.act(self.inp(_inputs(self.cfg, x))) / math.sqrt(self.n)

    def step(self, x: torch.Tensor, y: torch.Tensor, loss: Loss = mse) -> float:
        self.optimizer.zero_grad(set_to_none=True)
        value = loss(self(x), y.to(self.cfg.dtype))
        value.backward()
        self.optimizer.step()
        return float(value.detach())


def mean_field_network(cfg: MeanFieldConfig, width: int, seed: int = 0, parametrization: str = "mean_field") -> MeanFieldNetwork:
    """The finite network of width ``width`` (abcparam layers, ``abcparam.wrap``-ed SGD), drawn from ``seed``."""
    return MeanFieldNetwork(cfg, width, seed, parametrization)
