"""First-order MAML for any module, finite or infinite-width (docs/theory.md section 16).

First-order MAML is SGD on two losses: each task's *inner* step moves the
parameters on the support loss, and the *outer* step applies the query loss's
gradient, taken at the adapted parameters, to the parameters before
adaptation (averaged over the meta-batch, optionally clipped, then given to an
ordinary torch optimizer).  :class:`FOMAML` runs that loop on any
``nn.Module`` through ``torch.func``: an abcparam network (whose inner step
takes each tensor's learning-rate factor from :func:`abcparam.wrap`, so the
inner step is as width-consistent as the outer one) or the exact muP limit
:class:`abcparam.limits.LinearLimit`, which is itself a module.  The kernel
limits of :mod:`abcparam.kernels` (:class:`~abcparam.kernels.KernelFOMAML`) run the same loop in function space and
expose the same two methods, ``meta_step`` and ``adapt_predict``, on task
batches given as indices into a pool of inputs.

>>> import torch
>>> from abcparam.limits import LinearLimit
>>> model = LinearLimit(4, 3, sigma_v=0.5)
>>> learner = FOMAML(model, torch.optim.SGD(model.parameters(), lr=0.1), inner_lr=0.4, clip=0.5)
>>> pool = torch.randn(12, 4)
>>> s_idx, q_idx = torch.arange(6).view(2, 3), torch.arange(6, 12).view(2, 3)
>>> y = torch.tensor([[0, 1, 2], [2, 0, 1]])
>>> loss = learner.meta_step(pool, s_idx, y, q_idx, y)
>>> learner.adapt_predict(pool, s_idx, y, q_idx).shape
torch.Size([2, 3, 3])
"""

from __future__ import annotations

from typing import Callable, Dict, Optional, Tuple

from . import torch_quiet  # noqa: F401  (torch without the numpy warning)
import torch
from torch import nn
from torch.func import functional_call, grad, vmap

from . import validate
from .layers import abc_modules
from .limits import LinearLimit, LinearMLP
from .optim import wrap

__all__ = ["FOMAML", "check_tasks", "task_loss"]

Loss = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def task_loss(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Cross-entropy averaged over one task's examples (the loss of both MAML steps)."""
    return nn.functional.cross_entropy(logits, y)


def check_tasks(pool: torch.Tensor, s_idx: torch.Tensor, s_y: torch.Tensor, q_idx: torch.Tensor,
                q_y: Optional[torch.Tensor]) -> None:
    """A task batch: index tensors (tasks, shots) into ``pool``'s rows, labels of the same shape."""
    if not isinstance(pool, torch.Tensor) or pool.dim() != 2:
        raise ValueError(f"pool: expected a 2-d tensor (examples, features), got {getattr(pool, 'shape', pool)!r}")
    pairs = [("s_idx", s_idx, "s_y", s_y)] + ([("q_idx", q_idx, "q_y", q_y)] if q_y is not None else [("q_idx", q_idx, None, None)])
    for iname, idx, yname, y in pairs:
        if not isinstance(idx, torch.Tensor) or idx.dim() != 2 or idx.dtype.is_floating_point:
            raise ValueError(f"{iname}: expected a 2-d integer tensor (tasks, examples), got {getattr(idx, 'shape', idx)!r}")
        if idx.numel() and (int(idx.min()) < 0 or int(idx.max()) >= pool.shape[0]):
            raise ValueError(f"{iname}: indices must lie in [0, {pool.shape[0]}), got [{int(idx.min())}, {int(idx.max())}]")
        if y is not None and (not isinstance(y, torch.Tensor) or tuple(y.shape) != tuple(idx.shape)):
            raise ValueError(f"{yname}: expected labels of shape {tuple(idx.shape)}, got {getattr(y, 'shape', y)!r}")
    if s_idx.shape[0] != q_idx.shape[0]:
        raise ValueError(f"q_idx: {q_idx.shape[0]} tasks, but s_idx has {s_idx.shape[0]}")


def _inner_factors(model: nn.Module) -> Dict[str, float]:
    """Each parameter's SGD learning-rate factor from abcparam.wrap (1 for tensors no abcparam layer owns)."""
    params = dict(model.named_parameters())
    if not abc_modules(model):
        return {name: 1.0 for name in params}
    probe = wrap(torch.optim.SGD(list(params.values()), lr=1.0), model)
    by_id = {id(p): float(group["lr"]) for group in probe.param_groups for p in group["params"]}
    return {name: by_id.get(id(p), 1.0) for name, p in params.items()}


class FOMAML:
    """First-order MAML on ``model`` with ``optimizer`` for the outer step (docs/theory.md section 16).

    Args:
        model: any ``nn.Module`` mapping a batch of inputs to logits.
        optimizer: the outer optimizer over the model's parameters (a learning-rate
            scheduler on it works as usual).
        inner_lr: the inner SGD step size; each tensor's step is scaled by the
            factor :func:`abcparam.wrap` gives it under SGD (1 in TP4's muP form,
            where every tensor trains at one rate, and for plain modules).
        clip: the largest norm of the meta-gradient (``clip_grad_norm_``), or None.
        loss: the loss of one task's logits and labels (default: mean cross-entropy).

    The meta-gradient of a batch of tasks is the mean over tasks of the query
    loss's gradient at the adapted parameters, computed for all tasks at once
    with ``torch.func.vmap``.  For the 1-hidden-layer linear networks of
    :mod:`abcparam.limits` (:class:`~abcparam.limits.LinearMLP` and
    :class:`~abcparam.limits.LinearLimit`) the same numbers come from a closed
    form that never builds a task's adapted weights (the inner step moves them
    by a rank-``shots`` matrix): batched matrix products, tens of times faster at
    width 2048, equal to the general path to rounding (tests/test_maml.py).
    ``exact_linear=False`` forces the general path.
    """

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer, *, inner_lr: float = 0.4,
                 clip: Optional[float] = None, loss: Loss = task_loss, exact_linear: bool = True) -> None:
        if not isinstance(model, nn.Module):
            raise TypeError(f"model: expected an nn.Module, got {type(model).__name__}")
        if not isinstance(optimizer, torch.optim.Optimizer):
            raise TypeError(f"optimizer: expected a torch optimizer, got {type(optimizer).__name__}")
        self.model, self.optimizer, self.loss = model, optimizer, loss
        self.inner_lr = validate.number(inner_lr, "inner_lr")
        self.clip = validate.number(clip, "clip", none_ok=True)
        self.factors = _inner_factors(model)
        if not isinstance(exact_linear, bool):
            raise TypeError(f"exact_linear: expected True or False, got {exact_linear!r}")
        self.closed_form = exact_linear and isinstance(model, (LinearMLP, LinearLimit))

    def _params(self) -> Dict[str, torch.Tensor]:
        return {name: p.detach() for name, p in self.model.named_parameters()}

    def _loss_of(self, params: Dict[str, torch.Tensor], x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.loss(functional_call(self.model, params, (x,)), y)

    def adapt(self, params: Dict[str, torch.Tensor], xs: torch.Tensor, ys: torch.Tensor) -> Dict[str, torch.Tensor]:
        """One task's inner step: ``params - inner_lr * factor * grad(support loss)`` (first order: no graph)."""
        g = grad(self._loss_of)(params, xs, ys)
        return {name: p - (self.inner_lr * self.factors[name]) * g[name] for name, p in params.items()}

    def _query_grad(self, params: Dict[str, torch.Tensor], xs: torch.Tensor, ys: torch.Tensor, xq: torch.Tensor,
                    yq: torch.Tensor) -> Tuple[Dict[str, torch.Tensor], torch.Tensor]:
        adapted = self.adapt(params, xs, ys)
        return grad(self._loss_of)(adapted, xq, yq), self._loss_of(adapted, xq, yq)

    def meta_gradient(self, xs: torch.Tensor, ys: torch.Tensor, xq: torch.Tensor,
                      yq: torch.Tensor) -> Tuple[Dict[str, torch.Tensor], float]:
        """The first-order meta-gradient (mean over tasks) and the mean query loss after adaptation.

        ``xs``/``xq``: (tasks, shots, features) inputs, ``ys``/``yq``: (tasks, shots) labels.
        """
        if self.closed_form:
            grads, fq, _ = self._linear(xs, ys, xq, yq)
            return grads, float(vmap(self.loss)(fq, yq).mean())
        grads, losses = vmap(self._query_grad, in_dims=(None, 0, 0, 0, 0))(self._params(), xs, ys, xq, yq)
        return {name: g.mean(0) for name, g in grads.items()}, float(losses.mean())

    def _chi(self, f: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """dLoss/dlogits for every task at once (tasks, shots, classes)."""
        return vmap(grad(self.loss))(f, y)

    @torch.no_grad()
    def _linear(self, xs: torch.Tensor, ys: torch.Tensor, xq: torch.Tensor,
                yq: Optional[torch.Tensor]) -> Tuple[Dict[str, torch.Tensor], torch.Tensor, torch.Tensor]:
        """The closed form for ``f = M_v W_o (M_u W_i x)``: (mean meta-gradient, adapted query logits, chi_q).

        One inner step moves ``W_o`` by ``-eta_o M_v chi_s^T H_s`` and ``W_i`` by
        ``-eta_i M_u M_v W_o^T chi_s^T X_s``, so the adapted hidden query features are
        ``H_q - eta_i M_u^2 M_v (X_q X_s^T) chi_s W_o``: nothing of size width x inputs
        per task.  With ``yq`` None only the adapted logits are computed.
        """
        model = self.model
        mu, mv = model.multipliers()
        w_i, w_o = model.inp.weight, model.out.weight
        eta_i = self.inner_lr * self.factors["inp.weight"]
        eta_o = self.inner_lr * self.factors["out.weight"]
        Xs, Xq = model.augment(xs.to(w_i.dtype)), model.augment(xq.to(w_i.dtype))
        Hs, Hq = mu * Xs @ w_i.T, mu * Xq @ w_i.T                      # (T, k, n), (T, q, n)
        chi_s = self._chi(mv * Hs @ w_o.T, ys)                          # (T, k, o)
        Hq_ad = Hq - (eta_i * mu * mu * mv) * (Xq @ Xs.transpose(1, 2)) @ (chi_s @ w_o)
        Wo_ad = w_o - (eta_o * mv) * chi_s.transpose(1, 2) @ Hs         # (T, o, n)
        fq = mv * Hq_ad @ Wo_ad.transpose(1, 2)                         # (T, q, o)
        if yq is None:
            return {}, fq, fq
        chi_q = self._chi(fq, yq)
        T = xs.shape[0]
        g_o = (mv / T) * (chi_q.transpose(1, 2) @ Hq_ad).sum(0)
        B = chi_q @ Wo_ad                                               # (T, q, n)
        g_i = (mu * mv / T) * B.reshape(-1, B.shape[-1]).T @ Xq.reshape(-1, Xq.shape[-1])
        return {"inp.weight": g_i, "out.weight": g_o}, fq, chi_q

    def meta_step(self, pool: torch.Tensor, s_idx: torch.Tensor, s_y: torch.Tensor, q_idx: torch.Tensor,
                  q_y: torch.Tensor) -> float:
        """One outer step on the tasks given as indices into ``pool``; returns the mean query loss."""
        check_tasks(pool, s_idx, s_y, q_idx, q_y)
        grads, value = self.meta_gradient(pool[s_idx], s_y, pool[q_idx], q_y)
        for name, p in self.model.named_parameters():
            p.grad = grads[name].to(p.dtype)
        if self.clip is not None:
            nn.utils.clip_grad_norm_(self.model.parameters(), self.clip)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return value

    def adapt_predict(self, pool: torch.Tensor, s_idx: torch.Tensor, s_y: torch.Tensor,
                      q_idx: torch.Tensor) -> torch.Tensor:
        """Query logits (tasks, queries, classes) after each task's inner step on its support set."""
        check_tasks(pool, s_idx, s_y, q_idx, None)
        if self.closed_form:
            return self._linear(pool[s_idx], s_y, pool[q_idx], None)[1]
        params = self._params()
        return vmap(self._predict_one, in_dims=(None, 0, 0, 0))(params, pool[s_idx], s_y, pool[q_idx]).detach()

    def _predict_one(self, params: Dict[str, torch.Tensor], xs: torch.Tensor, ys: torch.Tensor,
                     xq: torch.Tensor) -> torch.Tensor:
        return functional_call(self.model, self.adapt(params, xs, ys), (xq,))
