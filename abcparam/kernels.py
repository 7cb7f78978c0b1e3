"""The kernel (NTK and GP) limits of a 1-hidden-layer network, trained in function space (docs/theory.md section 16).

The network is ``f(x) = sigma_v / sqrt(n) sum_i v_i phi(z_i(x))`` with
``z_i(x) = sigma_u u_i . x + sigma_b b_i bias`` and every ``u_i``, ``b_i``,
``v_i`` of iid N(0, 1) entries (NTK parametrization, one learning rate).  As
the width grows the pre-activations of two inputs are jointly Gaussian with
covariance ``Sigma(x, x') = sigma_u^2 x . x' + sigma_b^2 bias^2`` and

- the **GP limit** (only the readout trains) is kernel gradient descent with
  ``K_gp = sigma_v^2 E[phi(z) phi(z')]``;
- the **NTK limit** (both layers train, linearised at initialisation) with
  ``K_ntk = K_gp + sigma_v^2 E[phi'(z) phi'(z')] Sigma(x, x')``.

For ``phi`` the identity both are multiples of ``Sigma`` (``K_ntk = 2 K_gp``);
for ReLU they are the arc-cosine kernels of degree 1 and 0 (Cho and Saul 2009).
The limits here are centred (``f_0 = 0``, the mean of the random initial
function), as the finite networks' muP limit is.

:class:`KernelFOMAML` is that model for first-order MAML: ``f = K(., Z) C`` over
a fixed *basis* ``Z`` (the pool of meta-training inputs), since every SGD step
in function space adds ``K(., x) chi`` terms at points seen in training: the
inner step at the support points, the outer step at the query points.  It
keeps ``F = K(Z, Z) C`` up to date from the basis' kernel matrix (computed
once, N x N), so a meta-step costs a few of its rows, not a pass over the basis.

>>> import torch
>>> z = torch.eye(3, dtype=torch.float64)
>>> k = kernel(z @ z.T, (z * z).sum(1), (z * z).sum(1), kind="ntk", nonlinearity="linear", sigma_u=1.0,
...            sigma_b=0.0, sigma_v=1.0, bias=0.0)
>>> k.diagonal().tolist()
[2.0, 2.0, 2.0]
"""

from __future__ import annotations

import math
from typing import Dict, Optional, Tuple

from . import torch_quiet  # noqa: F401  (torch without the numpy warning)
import torch

from . import validate
from .maml import Loss, check_tasks, task_loss

__all__ = ["KINDS", "NONLINEARITIES", "kernel", "KernelFOMAML"]

KINDS = ("ntk", "gp")
NONLINEARITIES = ("linear", "relu")


def kernel(dots: torch.Tensor, sq_x: torch.Tensor, sq_y: torch.Tensor, *, kind: str, nonlinearity: str,
           sigma_u: float, sigma_b: float, sigma_v: float, bias: float) -> torch.Tensor:
    """K(x, y) for every pair from the inner products ``dots`` (.., Nx, Ny) and squared norms ``sq_x``, ``sq_y``.

    The module docstring gives the formulas; ``kind`` is ``"ntk"`` or ``"gp"``,
    ``nonlinearity`` ``"linear"`` or ``"relu"``.
    """
    validate.choice(kind, "kind", KINDS)
    validate.choice(nonlinearity, "nonlinearity", NONLINEARITIES)
    b2 = (sigma_b * bias) ** 2
    cov = sigma_u ** 2 * dots + b2
    if nonlinearity == "linear":
        gp, dphi = cov, torch.ones_like(cov)
    else:
        vx = (sigma_u ** 2 * sq_x + b2).unsqueeze(-1)
        vy = (sigma_u ** 2 * sq_y + b2).unsqueeze(-2)
        norm = (vx * vy).sqrt()
        cos = (cov / norm.clamp_min(torch.finfo(cov.dtype).tiny)).clamp(-1.0, 1.0)
        theta = torch.arccos(cos)
        gp = norm * (torch.sin(theta) + (math.pi - theta) * cos) / (2 * math.pi)
        dphi = (math.pi - theta) / (2 * math.pi)
    k = sigma_v ** 2 * gp
    return k + sigma_v ** 2 * dphi * cov if kind == "ntk" else k


class KernelFOMAML:
    """The NTK or GP limit of a 1-hidden-layer network as a first-order MAML learner in function space.

    Args:
        basis: the meta-training inputs (N, d): every point an outer step can
            add a term at.  Tasks index into it during meta-training.
        d_out: the number of outputs (classes).
        kind: ``"ntk"`` or ``"gp"`` (:func:`kernel`).
        nonlinearity: ``"relu"`` or ``"linear"`` (:func:`kernel`).
        sigma_u: the input weights' init std (:func:`kernel`).
        sigma_b: the input bias' init std (:func:`kernel`).
        sigma_v: the readout's init std (:func:`kernel`).
        bias: the constant input coordinate (:func:`kernel`).
        lr: the outer (meta) learning rate; :meth:`set_lr` changes it (a schedule).
        inner_lr: the inner step size.  clip: the largest meta-gradient norm
            (its RKHS norm, the limit of the finite network's parameter-gradient
            norm), or None.  loss: one task's loss (default mean cross-entropy).
        gram: ``basis @ basis.T`` if already computed; basis_kernel: the kernel
            matrix of the basis at ``sigma_v = 1`` (:func:`basis_kernel`), if
            already computed: learners over one basis that differ only in
            ``sigma_v``, ``lr`` or ``inner_lr`` can share it.

    Same two methods as :class:`abcparam.maml.FOMAML`: :meth:`meta_step` on
    tasks indexing ``basis``, :meth:`adapt_predict` on tasks indexing any pool.
    """

    def __init__(self, basis: torch.Tensor, d_out: int, *, kind: str = "ntk", nonlinearity: str = "relu",
                 sigma_u: float = 1.0, sigma_b: float = 1.0, sigma_v: float = 1.0, bias: float = 1.0,
                 lr: float = 0.1, inner_lr: float = 0.4, clip: Optional[float] = None, loss: Loss = task_loss,
                 gram: Optional[torch.Tensor] = None, basis_kernel: Optional[torch.Tensor] = None) -> None:
        if not isinstance(basis, torch.Tensor) or basis.dim() != 2 or not basis.dtype.is_floating_point:
            raise ValueError(f"basis: expected a 2-d float tensor (N, d), got {getattr(basis, 'shape', basis)!r}")
        d_out = validate.count(d_out, "d_out")
        self.kw = dict(kind=validate.choice(kind, "kind", KINDS), nonlinearity=validate.choice(nonlinearity, "nonlinearity", NONLINEARITIES),
                       sigma_u=validate.number(sigma_u, "sigma_u", zero_ok=True), sigma_b=validate.number(sigma_b, "sigma_b", zero_ok=True),
                       sigma_v=validate.number(sigma_v, "sigma_v"), bias=validate.number(bias, "bias", zero_ok=True))
        self.lr = validate.number(lr, "lr")
        self.inner_lr = validate.number(inner_lr, "inner_lr")
        self.clip = validate.number(clip, "clip", none_ok=True)
        self.loss = loss
        self.basis = basis
        n = basis.shape[0]
        if basis_kernel is None:
            if gram is None:
                gram = basis @ basis.T
            if tuple(gram.shape) != (n, n):
                raise ValueError(f"gram: expected shape {(n, n)}, got {tuple(gram.shape)}")
            sq = gram.diagonal()
            basis_kernel = kernel(gram, sq, sq, **{**self.kw, "sigma_v": 1.0})
        elif tuple(basis_kernel.shape) != (n, n):
            raise ValueError(f"basis_kernel: expected shape {(n, n)}, got {tuple(basis_kernel.shape)}")
        self.K = basis_kernel                                                 # K(Z, Z) at sigma_v = 1
        self.scale = self.kw["sigma_v"] ** 2
        self.sq = (basis * basis).sum(1)
        self.C = torch.zeros(basis.shape[0], d_out, dtype=basis.dtype)  # f = K(., Z) C
        self.F = torch.zeros_like(self.C)                                     # F = K(Z, Z) C
        self._cache: Dict[int, Tuple[int, torch.Tensor]] = {}
        self._version = 0

    def set_lr(self, lr: float) -> None:
        """The outer learning rate from now on (what a scheduler would set)."""
        self.lr = validate.number(lr, "lr")

    def _k(self, dots: torch.Tensor, sq_x: torch.Tensor, sq_y: torch.Tensor) -> torch.Tensor:
        return kernel(dots, sq_x, sq_y, **self.kw)

    def _chi(self, f: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return torch.func.vmap(torch.func.grad(self.loss))(f, y)

    def _adapted(self, f_s: torch.Tensor, f_q: torch.Tensor, y_s: torch.Tensor, k_qs: torch.Tensor) -> torch.Tensor:
        """Query values after each task's inner step: f_q - inner_lr K(x_q, x_s) chi_s."""
        return f_q - self.inner_lr * k_qs @ self._chi(f_s, y_s)

    @torch.no_grad()
    def meta_step(self, pool: torch.Tensor, s_idx: torch.Tensor, s_y: torch.Tensor, q_idx: torch.Tensor,
                  q_y: torch.Tensor) -> float:
        """One first-order MAML step on tasks indexing the basis; returns the mean query loss after adaptation."""
        if pool is not self.basis:
            raise ValueError("pool: meta-training tasks must index the learner's basis (pass the basis tensor itself)")
        check_tasks(pool, s_idx, s_y, q_idx, q_y)
        k_qs = self.scale * self.K[q_idx.unsqueeze(-1), s_idx.unsqueeze(-2)]
        fq = self._adapted(self.F[s_idx], self.F[q_idx], s_y, k_qs)
        with torch.enable_grad():
            value = float(torch.func.vmap(self.loss)(fq, q_y).mean())
        T = s_idx.shape[0]
        rows = q_idx.reshape(-1)
        coef = self._chi(fq, q_y).reshape(-1, self.C.shape[1]) / T          # the meta-gradient's coefficients
        step = self.lr
        k_qz = self.K.index_select(0, rows)                                   # K(x_q, Z): rows, contiguous
        if self.clip is not None:
            k_qq = self.scale * k_qz[:, rows]
            norm = float((coef * (k_qq @ coef)).sum().clamp_min(0).sqrt())
            step *= min(1.0, self.clip / (norm + 1e-6))
        self.C.index_add_(0, rows, -step * coef)
        self.F.addmm_(k_qz.T, coef, alpha=-step * self.scale)
        self._version += 1
        return value

    def values(self, pool: torch.Tensor) -> torch.Tensor:
        """f at every row of ``pool`` (from F on the basis itself; cached per pool until the next step)."""
        if pool is self.basis:
            return self.F
        hit = self._cache.get(id(pool))
        if hit is None or hit[0] != self._version:
            f = self._k(pool @ self.basis.T, (pool * pool).sum(1), self.sq) @ self.C
            self._cache = {id(pool): (self._version, f)}
            hit = self._cache[id(pool)]
        return hit[1]

    @torch.no_grad()
    def adapt_predict(self, pool: torch.Tensor, s_idx: torch.Tensor, s_y: torch.Tensor,
                      q_idx: torch.Tensor) -> torch.Tensor:
        """Query values (tasks, queries, classes) after each task's inner step on its support set."""
        check_tasks(pool, s_idx, s_y, q_idx, None)
        f = self.values(pool)
        dots_q = (pool[q_idx] @ pool[s_idx].transpose(1, 2))
        k_qs = self._k(dots_q, (pool[q_idx] ** 2).sum(-1), (pool[s_idx] ** 2).sum(-1))
        return self._adapted(f[s_idx], f[q_idx], s_y, k_qs)

    def similarity(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The kernel's cosine similarity K(x, y) / sqrt(K(x, x) K(y, y)) (its frozen features' geometry)."""
        sx, sy = (x * x).sum(1), (y * y).sum(1)
        kxy = self._k(x @ y.T, sx, sy)
        kxx = self._k(sx.unsqueeze(1), sx, sx).diagonal()
        kyy = self._k(sy.unsqueeze(1), sy, sy).diagonal()
        return kxy / (kxx.unsqueeze(1) * kyy.unsqueeze(0)).sqrt()
