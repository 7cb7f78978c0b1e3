"""What every check does to a model: build it, give it its optimizers, observe it, train it (docs/theory.md section 8).

The width check (:func:`abcparam.coord_check`) and the depth check
(:func:`abcparam.check.depth.depth_check`) measure different quantities, but
they build, observe and train a model the same way, with the pieces here:

- :func:`seeded_build`: the model at one size, under one seed;
- :func:`split_batch`, :func:`default_loss`, :func:`output_tensor`: what the
  model is fed, how its loss is taken, where its logits are;
- :func:`build_optimizers` / :func:`make_optimizer`: the user's optimizer (a
  class or a factory, hybrids included), wrapped by :func:`abcparam.wrap`
  unless it already is;
- :func:`observe` (a forward in eval mode without gradients, the training mode
  restored) and :func:`train_step` (one step of every optimizer).
"""

from __future__ import annotations

import inspect
import warnings
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple, Union

from .. import torch_quiet  # noqa: F401  (torch without the numpy warning)
import torch
from torch import nn

from ..optim import wrap

__all__ = ["Batch", "build_optimizers", "default_loss", "make_optimizer", "observe", "output_tensor", "own_loss", "rms",
           "lr_argument", "seeded_build", "split_batch", "takes_lr", "train_step"]

Batch = Union[torch.Tensor, Tuple[Any, ...], Mapping[str, Any]]


def split_batch(batch: Batch) -> Tuple[Tuple[Any, ...], Dict[str, Any], Any]:
    """``batch`` as (positional inputs, keyword inputs, target or None): a tensor x, (x,), (x, y) or a dict of inputs."""
    if isinstance(batch, torch.Tensor):
        return (batch,), {}, None
    if isinstance(batch, Mapping):
        return (), dict(batch), None
    if isinstance(batch, (tuple, list)):
        if len(batch) == 1:
            return (batch[0],), {}, None
        if len(batch) == 2:
            return (batch[0],), {}, batch[1]
    raise TypeError("batch: expected a tensor x, a tuple (x, y), or a dict of keyword inputs for the model")


def default_loss(out: Any, y: Any) -> torch.Tensor:
    """MSE for float targets, cross-entropy for integer ones; without a target, the loss the model returns (a scalar
    output, or the ``loss`` of a dict or of an object such as HF's ``ModelOutput``)."""
    if y is None:
        own = own_loss(out)
        if own is not None:
            return own
        raise ValueError("loss: the model's output is not a scalar loss and the batch has no target; pass loss=fn(output, y) or batch=(x, y)")
    logits = output_tensor(out)
    if logits is None:
        raise ValueError(f"loss: cannot find the logits in the model's {type(out).__name__} output (a tensor, a tuple or list "
                         "with the logits first, a dict or an object with 'logits'); pass loss=fn(output, y)")
    if not (y.is_floating_point() or y.is_complex()) and y.dtype != torch.bool:  # class indices, of any integer dtype
        return nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1).long())
    return nn.functional.mse_loss(logits, y)


def own_loss(out: Any) -> Optional[torch.Tensor]:
    """The scalar loss a model returned itself (the output, or its ``loss`` entry or attribute), else None."""
    if isinstance(out, torch.Tensor):
        return out if out.dim() == 0 else None
    loss = out.get("loss") if isinstance(out, Mapping) else getattr(out, "loss", None)
    return loss if isinstance(loss, torch.Tensor) and loss.dim() == 0 else None


def output_tensor(out: Any) -> Optional[torch.Tensor]:
    """The model's logits: the output itself, ``.logits`` / ``["logits"]`` (HF's ModelOutput has both), or the
    first element of a tuple or list ((logits, loss) as nanoGPT returns)."""
    if isinstance(out, torch.Tensor):
        return out
    logits = out.get("logits") if isinstance(out, Mapping) else getattr(out, "logits", None)
    if isinstance(logits, torch.Tensor):
        return logits
    if isinstance(out, (tuple, list)) and out and isinstance(out[0], torch.Tensor):
        return out[0]
    return None


def rms(t: torch.Tensor) -> float:
    """The root mean square of ``t``'s entries, in float64."""
    return float(t.detach().double().pow(2).mean().sqrt())


def build_optimizers(optimizer: Any, model: nn.Module, lr: float) -> List[torch.optim.Optimizer]:
    """The optimizers ``optimizer`` makes for ``model``, as built: a class, or a factory returning one optimizer or
    several (a hybrid set-up such as Muon for the hidden matrices and AdamW for the rest)."""
    if isinstance(optimizer, type) and issubclass(optimizer, torch.optim.Optimizer):
        made: Any = optimizer(model.parameters(), lr=lr)
    elif callable(optimizer):
        how = lr_argument(optimizer)
        made = (optimizer(model.parameters(), lr) if how == "positional" else
                optimizer(model.parameters(), lr=lr) if how == "keyword" else optimizer(model.parameters()))
    else:
        raise TypeError(f"optimizer: expected a torch optimizer class or a factory params -> optimizer, got {optimizer!r}")
    opts = list(made) if isinstance(made, (list, tuple)) else [made]
    for o in opts:
        if not isinstance(o, torch.optim.Optimizer):
            raise TypeError(f"optimizer: the factory returned {type(o).__name__}, not a torch optimizer (or a list of them)")
    return opts


def make_optimizer(optimizer: Any, model: nn.Module, lr: float, family: Optional[str]) -> List[torch.optim.Optimizer]:
    """The optimizers that train ``model`` (:func:`build_optimizers`), wrapped."""
    opts = build_optimizers(optimizer, model, lr)
    wrapped = [any("abc_lr_scale" in g for g in o.param_groups) for o in opts]
    if all(wrapped):
        return opts
    if any(wrapped):
        raise ValueError("optimizer: the factory returned optimizers of which some are wrapped and some not; wrap all or none")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # unowned tensors are reported by the check itself
        wrap(opts, model, family=family)  # a list of one is wrapped as its optimizer alone
    return opts


def lr_argument(fn: Callable[..., Any]) -> Optional[str]:
    """How an optimizer factory takes the learning rate: ``"positional"`` (its second positional parameter is
    ``lr`` or has no default: ``(params, lr) -> optimizer``), ``"keyword"`` (it has no such parameter but forwards
    ``**kwargs``, as microsoft/mup's ``MuAdam(params, impl=Adam, **kwargs)``), or None (``params -> optimizer``)."""
    try:
        sig = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return None
    params = [p for p in sig if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    if len(params) >= 2 and (params[1].name == "lr" or params[1].default is inspect.Parameter.empty):
        return "positional"
    if any(p.kind == p.VAR_KEYWORD for p in sig) and not any(p.name == "lr" for p in sig):
        return "keyword"
    return None


def takes_lr(fn: Callable[..., Any]) -> bool:
    """Whether an optimizer factory takes the learning rate as a second positional argument."""
    return lr_argument(fn) == "positional"


def seeded_build(build: Callable[[int], nn.Module], size: int, seed: int) -> nn.Module:
    """``build(size)`` under ``torch.manual_seed(seed)``, refused unless it is an nn.Module."""
    torch.manual_seed(seed)
    model = build(size)
    if not isinstance(model, nn.Module):
        raise TypeError(f"build: build({size}) returned {type(model).__name__}, not an nn.Module")
    return model


_BatchNorm = nn.modules.batchnorm._BatchNorm


def observe(model: nn.Module, args: Tuple[Any, ...], kwargs: Dict[str, Any]) -> Any:
    """The model's output on the batch in eval mode, without gradients; its training mode is restored after.

    Batch norms are the exception: they normalise with the batch's own statistics, as in the training steps, and
    their running statistics are left as they were.  In eval mode they would use the running averages, which move
    from their initial (0, 1) towards the batch's by the same amount at every width during the check's few steps:
    an order-one change of every later feature that training never sees (it would hide a kernel regime's
    n^-1/2 and shift muP's constants)."""
    was = {m: m.training for m in model.modules()}
    norms = [m for m in model.modules() if isinstance(m, _BatchNorm)]
    saved = [{k: b.clone() for k, b in m.named_buffers(recurse=False) if b is not None} for m in norms]
    model.eval()
    for m in norms:
        m.train()
    try:
        with torch.no_grad():
            out = model(*args, **kwargs)
    finally:
        for m, buffers in zip(norms, saved):
            for k, b in buffers.items():
                getattr(m, k).copy_(b)
        for m, mode in was.items():
            m.training = mode
    return out


def train_step(model: nn.Module, opts: Sequence[torch.optim.Optimizer], loss_fn: Callable[[Any, Any], torch.Tensor],
               args: Tuple[Any, ...], kwargs: Dict[str, Any], y: Any) -> float:
    """One training step: the loss of a forward in training mode, its backward, a step of every optimizer; the loss."""
    model.train()
    for o in opts:
        o.zero_grad(set_to_none=True)
    loss = loss_fn(model(*args, **kwargs), y)
    loss.backward()
    for o in opts:
        o.step()
    return float(loss.detach())
