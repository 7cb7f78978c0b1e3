"""The optimizer wrapper: per-layer learning rates, epsilons and weight decay.

:func:`wrap` takes any torch optimizer already built over a model's
parameters and re-splits its param groups so that each tensor trains at
``lr * m^-c`` for its layer's role and the optimizer's family (docs/theory.md
section 1), with Adam's ``eps * m^-d`` (section 10) and a width-invariant
weight decay.  The width factors are read from the abcparam layers' plain
attributes, never from tensor attributes, so wrapping works the same under
DDP, FSDP2, ``torch.compile`` and after ``torch.load``.

Schedulers (created after wrapping; wrapping an optimizer that already has
one is refused): every new group stores its own ``lr``, so multiplicative schedulers (LambdaLR,
StepLR, MultiStepLR, ExponentialLR, CosineAnnealingLR with ``eta_min=0``,
LinearLR, ...) keep the ratios between groups.  Schedulers given *absolute*
learning rates (OneCycleLR's and CyclicLR's ``max_lr``/``base_lr``,
CosineAnnealingLR's ``eta_min``, ReduceLROnPlateau's ``min_lr``) would set
every group to the same value; pass them per group with :func:`per_group`.

>>> import torch, abcparam
>>> p = abcparam.mup(width=512, base_width=128)
>>> net = torch.nn.Sequential(abcparam.Linear(8, 512, role="input", param=p),
...                           abcparam.Linear(512, 512, param=p),
...                           abcparam.Linear(512, 1, role="output", param=p))
>>> opt = abcparam.wrap(torch.optim.Adam(net.parameters(), lr=1e-3), net)
>>> sorted({g["lr"] for g in opt.param_groups})
[0.00025, 0.0005, 0.001]
"""

from __future__ import annotations

import warnings
import weakref
from typing import Any, Dict, List, Optional, Tuple

from . import _torch  # noqa: F401  (torch without the numpy warning)
import torch
from torch import nn

from .layers import _UNIT, ParamScales, abc_modules
from .theory import optimizer_family

__all__ = ["wrap", "per_group", "WEIGHT_DECAY_MODES"]

WEIGHT_DECAY_MODES = ("coupled", "independent")
_MARK = "_abcparam_wrapped"


def _owned_scales(model: nn.Module) -> Dict[int, Tuple[str, ParamScales]]:
    """id(parameter) -> (qualified name, scales) for every tensor an abcparam layer owns."""
    out: Dict[int, Tuple[str, ParamScales]] = {}
    for mod_name, mod in abc_modules(model).items():
        for pname, scales in mod.abc_scales().items():
            p = getattr(mod, pname, None)
            if isinstance(p, torch.Tensor):
                name = f"{mod_name}.{pname}" if mod_name else pname
                prev = out.get(id(p))
                if prev is not None and prev[1] != scales:
                    raise ValueError(f"model: the tensor {name} is shared with {prev[0]} under different scales")
                out.setdefault(id(p), (name, scales))
    return out


def _param_names(model: nn.Module) -> Dict[int, str]:
    return {id(p): n for n, p in model.named_parameters(remove_duplicate=False)}


def wrap(
    optimizer: torch.optim.Optimizer,
    model: nn.Module,
    *,
    family: Optional[str] = None,
    strict: bool = False,
    scale_eps: bool = True,
    weight_decay: str = "coupled",
) -> torch.optim.Optimizer:
    """Re-split ``optimizer``'s param groups so each tensor trains at its layer's rate.

    Args:
        optimizer: a torch optimizer built over ``model``'s parameters, with any
            groups and options; it is changed in place and returned.
        model: the model (may be wrapped in DDP, FSDP2 or ``torch.compile``).
        family: ``"sgd"`` or ``"adam"``; detected for every ``torch.optim``
            optimizer, required for any other.
        strict: raise instead of warning when a parameter is owned by no
            abcparam layer (such tensors keep the base learning rate).
        scale_eps: Adam-like optimizers get ``eps * m^-d`` per group (docs/theory.md
            section 10).  microsoft/mup never scales eps; ``False`` does the same.
        weight_decay: ``"coupled"`` (default; microsoft/mup's convention: each
            group's ``lr * weight_decay`` equals the base ``lr * weight_decay``,
            so at m = 1 nothing changes) or ``"independent"`` (the group's
            ``weight_decay`` is read as the per-step decay itself, the same for
            every group and for every base learning rate; torch's decoupled
            decay ``lr * wd`` is set to it at the initial learning rate and then
            follows the schedule).

    Raises ``ValueError``/``TypeError`` before changing anything: for an unknown
    optimizer family, a second wrap, strict mode with unowned parameters, an
    optimizer that cannot hold per-layer rates (LBFGS), or a bad option.

    After wrapping, a group added with ``optimizer.add_param_group`` is split
    and scaled like the others before the next step, and ``load_state_dict``
    refuses a state saved at another width or base width (or by an unwrapped
    optimizer), naming both, before anything is loaded.
    """
    if not isinstance(optimizer, torch.optim.Optimizer):
        raise TypeError(f"optimizer: expected a torch.optim.Optimizer, got {type(optimizer).__name__}")
    if not isinstance(model, nn.Module):
        raise TypeError(f"model: expected an nn.Module, got {type(model).__name__}")
    if isinstance(optimizer, torch.optim.LBFGS):
        raise ValueError(
            "optimizer: LBFGS keeps exactly one param group, so it cannot give each layer its own learning rate; "
            "abcparam cannot wrap it (use a first-order optimizer, or build the model in the a = 0 form "
            "(param.canonical()) and give up per-layer rates knowingly)"
        )
    if getattr(optimizer, _MARK, False) or any("abc_lr_scale" in g for g in optimizer.param_groups):
        raise ValueError("optimizer: already wrapped by abcparam.wrap; wrapping twice would scale twice")
    if any("initial_lr" in g for g in optimizer.param_groups):
        raise ValueError(
            "optimizer: a learning-rate scheduler is already attached (its groups carry 'initial_lr'); "
            "call abcparam.wrap before creating the scheduler, which must see the re-split groups"
        )
    if weight_decay not in WEIGHT_DECAY_MODES:
        raise ValueError(f"weight_decay: got {weight_decay!r}; allowed: {', '.join(WEIGHT_DECAY_MODES)}")
    if family is None:
        fam_found = _detect_family(type(optimizer))
        if fam_found is None:
            raise ValueError(
                f"optimizer: cannot tell whether {type(optimizer).__name__} is SGD-like or Adam-like; "
                "pass family='sgd' (update proportional to the gradient) or family='adam' (entrywise normalised)"
            )
        fam = fam_found
    else:
        if family not in ("sgd", "adam"):
            raise ValueError(f"family: got {family!r}; allowed: 'sgd' or 'adam'")
        fam = family

    owned = _owned_scales(model)
    names = _param_names(model)
    unowned = [names.get(id(p), f"<unnamed {tuple(p.shape)}>") for g in optimizer.param_groups for p in g["params"] if id(p) not in owned]
    if unowned and strict:
        raise ValueError(f"model: parameters owned by no abcparam layer (strict=True): {', '.join(unowned)}")

    options = {"family": fam, "scale_eps": scale_eps, "weight_decay": weight_decay}
    widths = _model_widths(model)
    new_groups: List[Dict[str, Any]] = []
    for group in optimizer.param_groups:
        new_groups.extend(_split_group(group, owned, options, widths))

    # Everything validated and computed: now change the optimizer.
    optimizer.param_groups = new_groups
    setattr(optimizer, _MARK, True)
    _install_hooks(optimizer, model, options)
    if unowned:
        warnings.warn(
            f"abcparam.wrap: {len(unowned)} parameter(s) are owned by no abcparam layer and keep the base "
            f"learning rate: {', '.join(unowned)}",
            stacklevel=2,
        )
    return optimizer


def _detect_family(cls: type) -> Optional[str]:
    """The family of an optimizer class: its own name, else the torch.optim class it derives from (a subclass of
    Adam is Adam-like)."""
    for klass in cls.__mro__:
        if klass is cls or klass.__module__.startswith("torch.optim"):
            try:
                return optimizer_family(klass.__name__)
            except ValueError:
                continue
    return None


def _model_widths(model: nn.Module) -> str:
    """The model's width and base width as text ("1024/128"; several, comma-separated, for mixed models)."""
    pairs = sorted({(getattr(m, "width", None), getattr(m, "base_width", None)) for m in abc_modules(model).values()}, key=str)
    return ", ".join(f"{w}/{b}" for w, b in pairs)


def _split_group(
    group: Dict[str, Any], owned: Dict[int, Tuple[str, ParamScales]], options: Dict[str, Any], widths: str
) -> List[Dict[str, Any]]:
    """One param group re-split into one group per distinct (lr factor, eps factor), with its options kept."""
    fam = options["family"]
    eps_on = fam == "adam" and options["scale_eps"]
    # Tensors of different roles that train alike share a group, since every group costs a pass of the optimizer's loop.
    buckets: Dict[Tuple[float, float], Tuple[ParamScales, List[torch.Tensor]]] = {}
    for p in group["params"]:
        scales = owned[id(p)][1] if id(p) in owned else _UNIT
        key = (scales.lr(fam), scales.eps if fam == "adam" else 1.0)
        if key in buckets and buckets[key][0].role != scales.role:
            buckets[key] = (buckets[key][0]._replace(role="mixed"), buckets[key][1])
        buckets.setdefault(key, (scales, []))[1].append(p)
    out = []
    for scales, params in buckets.values():
        new = {k: v for k, v in group.items() if k != "params"}
        new["params"] = params
        lr_scale = scales.lr(fam)
        new["lr"] = _scale(group["lr"], lr_scale)
        if eps_on and "eps" in group and isinstance(group["eps"], (int, float)):
            new["eps"] = group["eps"] * scales.eps
        wd = group.get("weight_decay", 0.0)
        if wd:
            if options["weight_decay"] == "coupled":
                new["weight_decay"] = wd / lr_scale
            elif float(new["lr"]) == 0.0:
                raise ValueError("weight_decay: 'independent' decay needs a nonzero learning rate in every group")
            else:
                new["weight_decay"] = wd / float(new["lr"])
        new["abc_lr_scale"] = lr_scale
        new["abc_eps_scale"] = scales.eps if eps_on else 1.0
        new["abc_role"] = scales.role
        new["abc_family"] = fam
        new["abc_widths"] = widths
        out.append(new)
    return out


def _install_hooks(optimizer: torch.optim.Optimizer, model: nn.Module, options: Dict[str, Any]) -> None:
    """Keep a wrapped optimizer right after wrapping: groups added later, and state loaded from elsewhere.

    * ``add_param_group`` after wrapping: before the next step, the new group is
      split and scaled exactly as :func:`wrap` would have done (the model is
      held by a weak reference; its abcparam layers are read again then).
    * ``load_state_dict``: a state saved at another width or base width (or by
      an optimizer that was not wrapped) is refused before anything is loaded:
      its learning rates and epsilons belong to another model.
    """
    model_ref = weakref.ref(model)

    def scale_new_groups(opt: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
        fresh = [i for i, g in enumerate(opt.param_groups) if "abc_lr_scale" not in g]
        if not fresh:
            return
        m = model_ref()
        if m is None:
            raise RuntimeError("abcparam.wrap: a param group was added after wrapping, but the wrapped model no longer exists")
        owned, widths = _owned_scales(m), _model_widths(m)
        groups: List[Dict[str, Any]] = []
        for i, g in enumerate(opt.param_groups):
            groups.extend(_split_group(g, owned, options, widths) if i in fresh else [g])
        opt.param_groups = groups

    def check_loaded_state(opt: torch.optim.Optimizer, state_dict: Dict[str, Any]) -> None:
        saved = state_dict.get("param_groups", [])
        mine = opt.param_groups
        if any("abc_lr_scale" not in g for g in saved):
            raise ValueError(
                "state_dict: saved by an optimizer that abcparam.wrap did not wrap; its param groups do not carry "
                "per-layer learning rates. Load it into the unwrapped optimizer, or save the wrapped one"
            )
        saved_widths = {g.get("abc_widths") for g in saved}
        my_widths = {g.get("abc_widths") for g in mine}
        if saved_widths != my_widths:
            raise ValueError(
                f"state_dict: saved by an optimizer wrapped at width/base width {', '.join(sorted(map(str, saved_widths)))}, "
                f"but this one is at {', '.join(sorted(map(str, my_widths)))}; its learning rates, epsilons and Adam "
                "moments belong to that model. Build the model at the checkpoint's width and base width to resume"
            )
        if len(saved) == len(mine):
            for k, (a, b) in enumerate(zip(saved, mine)):
                if (a.get("abc_lr_scale"), a.get("abc_eps_scale"), a.get("abc_family")) != (
                        b.get("abc_lr_scale"), b.get("abc_eps_scale"), b.get("abc_family")):
                    raise ValueError(
                        f"state_dict: param group {k} was saved with width factors lr x{a.get('abc_lr_scale')}, "
                        f"eps x{a.get('abc_eps_scale')} ({a.get('abc_family')}), this optimizer has lr x{b.get('abc_lr_scale')}, "
                        f"eps x{b.get('abc_eps_scale')} ({b.get('abc_family')}): another parametrization or optimizer family"
                    )

    optimizer.register_step_pre_hook(scale_new_groups)
    if hasattr(optimizer, "register_load_state_dict_pre_hook"):  # torch >= 2.2
        optimizer.register_load_state_dict_pre_hook(check_loaded_state)


def _scale(lr: Any, factor: float) -> Any:
    if isinstance(lr, torch.Tensor):
        return lr * factor
    return float(lr) * factor


def per_group(optimizer: torch.optim.Optimizer, value: float) -> List[float]:
    """``value`` scaled by each group's width factor, for schedulers that take absolute rates.

    >>> import torch, abcparam
    >>> p = abcparam.mup(512, 128)
    >>> net = torch.nn.Sequential(abcparam.Linear(8, 512, param=p), abcparam.Linear(512, 512, param=p),
    ...                           abcparam.Linear(512, 1, param=p))
    >>> opt = abcparam.wrap(torch.optim.Adam(net.parameters(), lr=1e-2), net)
    >>> sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=abcparam.per_group(opt, 1e-2), total_steps=100)
    >>> sorted({round(max_lr, 6) for max_lr in abcparam.per_group(opt, 1e-2)})
    [0.0025, 0.005, 0.01]
    """
    if not any("abc_lr_scale" in g for g in optimizer.param_groups):
        raise ValueError("optimizer: not wrapped by abcparam.wrap; per_group needs the wrapped optimizer")
    return [float(value) * g.get("abc_lr_scale", 1.0) for g in optimizer.param_groups]

