"""The optimizer wrapper: per-layer learning rates, epsilons and weight decay.

:func:`wrap` takes any torch optimizer already built over a model's
parameters (or several, for a hybrid set-up such as Muon with AdamW) and
re-splits its param groups so that each tensor trains at ``lr * m^-c`` for its
layer's role and the optimizer's family (docs/theory.md sections 1 and 11:
SGD-like, Adam-like, spectral, relative), with Adam's ``eps * m^-d`` (section
10), Adafactor's two epsilons, torch Muon's own shape factor counted once, and
a width-invariant weight decay.  The width factors are read from the abcparam layers' plain
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

import math
import warnings
import weakref
from typing import Any, Dict, List, Optional, Sequence, Tuple

from . import validate
from . import torch_quiet  # noqa: F401  (torch without the numpy warning)
import torch
from torch import nn

from .layers import UNIT_SCALES, ParamScales, abc_modules
from .residual import DepthScales, depth_scales
from .theory import FAMILIES, optimizer_family

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
    optimizer: Any,
    model: nn.Module,
    *,
    family: Any = None,
    strict: bool = False,
    scale_eps: bool = True,
    weight_decay: str = "coupled",
) -> Any:
    """Re-split ``optimizer``'s param groups so each tensor trains at its layer's rate.

    Args:
        optimizer: a torch optimizer built over ``model``'s parameters, with any
            groups and options; it is changed in place and returned.  Or a list
            (or tuple) of optimizers that together train the model (a *hybrid*
            set-up such as Muon for the hidden matrices and AdamW for the rest,
            docs/theory.md section 11): each is wrapped for its own family, and
            every trained tensor of the model must be in exactly one of them
            (a tensor in none or in two is named in the error).  The list is
            returned.
        model: the model (may be wrapped in DDP, FSDP2 or ``torch.compile``).
        family: ``"sgd"``, ``"adam"``, ``"spectral"`` or ``"relative"``;
            detected for every torch optimizer and its subclasses, required for
            any other (one value for all optimizers of a list, or one each).
        strict: raise instead of warning when a parameter is owned by no
            abcparam layer (such tensors keep the base learning rate); for a
            list, over the union of its optimizers.
        scale_eps: Adam-like optimizers get ``eps * m^-d`` per group (docs/theory.md
            section 10); Adafactor gets ``eps1 * m^-d`` and ``eps2`` (its floor
            under RMS(w)) times the stored tensor's init scale ``m^-b`` (section 11).
            microsoft/mup never scales eps; ``False`` does the same.
        weight_decay: ``"coupled"`` (default; microsoft/mup's convention: each
            group's ``lr * weight_decay`` equals the base ``lr * weight_decay``,
            so at m = 1 nothing changes) or ``"independent"`` (the group's
            ``weight_decay`` is read as the per-step decay itself, the same for
            every group and for every base learning rate; torch's decoupled
            decay ``lr * wd`` is set to it at the initial learning rate and then
            follows the schedule).  Muon and Adafactor decay by ``lr * wd`` like
            AdamW, with the group's learning rate before Muon's own shape factor.

    Per family (section 11): SGD-like tensors train at ``lr * m^-c_sgd``,
    Adam-like at ``lr * m^-c_adam``, relative (Adafactor: its ``lr`` caps the
    relative step, ``rho_t = min(lr, 1/sqrt(t))``, so a group rate above
    ``1/sqrt(t)`` is clipped) at ``lr * m^-c_relative``; spectral (Muon) at
    ``lr * m^-c_spectral`` *including* ``torch.optim.Muon``'s own shape factor
    (``adjust_lr_fn``): each group's rate carries only the difference between
    that factor at this width and at base width, never both.  Rprop's
    ``step_sizes`` bounds are scaled with the rate.

    Raises ``ValueError``/``TypeError`` before changing anything: for an unknown
    optimizer family or one outside the theory (L-BFGS, Adadelta), a second
    wrap, strict mode with unowned parameters, a Muon ``adjust_lr_fn`` it does
    not know, or a bad option.

    After wrapping, a group added with ``optimizer.add_param_group`` is split
    and scaled like the others before the next step, and ``load_state_dict``
    refuses a state saved at another width or base width (or by an unwrapped
    optimizer), naming both, before anything is loaded.
    """
    many = isinstance(optimizer, (list, tuple))
    opts = list(optimizer) if many else [optimizer]
    if many and not opts:
        raise ValueError("optimizer: got an empty list; give one optimizer or a list of the optimizers that train the model")
    if not isinstance(model, nn.Module):
        raise TypeError(f"model: expected an nn.Module, got {type(model).__name__}")
    validate.choice(weight_decay, "weight_decay", WEIGHT_DECAY_MODES)
    if isinstance(family, (list, tuple)):
        if len(family) != len(opts):
            raise ValueError(f"family: got {len(family)} families for {len(opts)} optimizers; give one, or one per optimizer")
        fams_given = list(family)
    else:
        fams_given = [family] * len(opts)
    if len({id(o) for o in opts}) != len(opts):
        raise ValueError("optimizer: the same optimizer appears twice in the list")
    fams = [_check_optimizer(o, f, k if many else None) for k, (o, f) in enumerate(zip(opts, fams_given))]

    owned = _owned_scales(model)
    names = _param_names(model)
    if many:
        _check_union(opts, model, names)
    unowned = [names.get(id(p), f"<unnamed {tuple(p.shape)}>") for o in opts for g in o.param_groups for p in g["params"]
               if id(p) not in owned]
    if unowned and strict:
        raise ValueError(f"model: parameters owned by no abcparam layer (strict=True): {', '.join(unowned)}")

    widths = _model_widths(model)
    depth = depth_scales(model)
    plans = []
    for opt, fam in zip(opts, fams):
        options = {"family": fam, "scale_eps": scale_eps, "weight_decay": weight_decay}
        new_groups: List[Dict[str, Any]] = []
        for group in opt.param_groups:
            new_groups.extend(_split_group(group, owned, options, widths, opt, depth))
        plans.append((opt, new_groups, options))

    # Everything validated and computed: now change the optimizers.
    for opt, new_groups, options in plans:
        opt.param_groups = new_groups
        setattr(opt, _MARK, True)
        _install_hooks(opt, model, options)
    if unowned:
        warnings.warn(
            f"abcparam.wrap: {len(unowned)} parameter(s) are owned by no abcparam layer and keep the base "
            f"learning rate: {', '.join(unowned)}",
            stacklevel=2,
        )
    return optimizer


def _check_optimizer(optimizer: Any, family: Any, index: Optional[int]) -> str:
    """Validate one optimizer for wrapping and return its family (nothing is changed)."""
    where = "optimizer" if index is None else f"optimizer[{index}]"
    if not isinstance(optimizer, torch.optim.Optimizer):
        raise TypeError(f"{where}: expected a torch.optim.Optimizer, got {type(optimizer).__name__}")
    if isinstance(optimizer, torch.optim.LBFGS):
        raise ValueError(
            f"{where}: LBFGS keeps exactly one param group, so it cannot give each layer its own learning rate; "
            "abcparam cannot wrap it (use a first-order optimizer, or build the model in the a = 0 form "
            "(param.canonical()) and give up per-layer rates knowingly)"
        )
    if getattr(optimizer, _MARK, False) or any("abc_lr_scale" in g for g in optimizer.param_groups):
        raise ValueError(f"{where}: already wrapped by abcparam.wrap; wrapping twice would scale twice")
    if any("initial_lr" in g for g in optimizer.param_groups):
        raise ValueError(
            f"{where}: a learning-rate scheduler is already attached (its groups carry 'initial_lr'); "
            "call abcparam.wrap before creating the scheduler, which must see the re-split groups"
        )
    if family is not None:
        if family not in FAMILIES:
            raise ValueError(f"family: got {family!r}; allowed: {', '.join(repr(f) for f in FAMILIES)}")
        fam = family
    else:
        try:
            fam = optimizer_family(optimizer)
        except ValueError as err:
            if "outside the theory" in str(err):
                raise ValueError(f"{where}: {str(err).split(': ', 1)[1]}") from None
            raise ValueError(
                f"{where}: cannot tell the family of {type(optimizer).__name__}; pass family='sgd' (update proportional "
                "to the gradient), 'adam' (entrywise normalised), 'spectral' (orthogonalised matrix update, like Muon) "
                "or 'relative' (update proportional to the weight's RMS, like Adafactor)"
            ) from None
    if isinstance(optimizer, _MUON):
        for g in optimizer.param_groups:
            if g.get("adjust_lr_fn") not in _MUON_ADJUST:
                raise ValueError(
                    f"{where}: Muon's adjust_lr_fn {g.get('adjust_lr_fn')!r} is not one abcparam knows "
                    f"({', '.join(map(repr, _MUON_ADJUST))}); its width factor would be applied on top of abcparam's"
                )
    return fam


def _check_union(opts: List[torch.optim.Optimizer], model: nn.Module, names: Dict[int, str]) -> None:
    """Several optimizers over one model: every trained tensor in exactly one of them."""
    where: Dict[int, List[int]] = {}
    for k, o in enumerate(opts):
        for g in o.param_groups:
            for p in g["params"]:
                if k not in where.setdefault(id(p), []):
                    where[id(p)].append(k)
    twice = [f"{names.get(i, '<not in the model>')} (optimizers {', '.join(map(str, ks))})" for i, ks in where.items() if len(ks) > 1]
    if twice:
        raise ValueError(f"optimizer: tensors trained by more than one optimizer: {', '.join(twice)}")
    missing = [n for n, p in model.named_parameters() if p.requires_grad and id(p) not in where]
    if missing:
        raise ValueError(
            f"optimizer: trained tensors in none of the {len(opts)} optimizers: {', '.join(missing)} "
            "(add them to one, e.g. AdamW for biases and gains, or set requires_grad=False to freeze them)"
        )


_MUON = getattr(torch.optim, "Muon", ())  # torch >= 2.9
_MUON_ADJUST = (None, "original", "match_rms_adamw")


def muon_factor(adjust: Optional[str], shape: Sequence[float]) -> float:
    """torch.optim.Muon's own learning-rate factor for a matrix of ``shape`` (its ``adjust_lr_fn``)."""
    n_out, n_in = float(shape[0]), float(shape[1])
    if adjust in (None, "original"):
        return math.sqrt(max(1.0, n_out / n_in))
    return 0.2 * math.sqrt(max(n_out, n_in))  # "match_rms_adamw"


def _model_widths(model: nn.Module) -> str:
    """The model's width and base width as text ("1024/128"; several, comma-separated, for mixed models)."""
    pairs = sorted({(getattr(m, "width", None), getattr(m, "base_width", None)) for m in abc_modules(model).values()}, key=str)
    return ", ".join(f"{w}/{b}" for w, b in pairs)


def _lr_factor(scales: ParamScales, fam: str, p: torch.Tensor, group: Dict[str, Any], opt: Any,
               ds: Optional[DepthScales]) -> float:
    """The factor on a tensor's learning rate: m^-c of its family, the depth factor inside a residual branch
    (section 12), and for torch's Muon the ratio of Muon's own shape factor at base width to the one it applies at
    this width (so the total is m^-c times the base-width rate)."""
    f = scales.lr(fam) * (ds.lr(fam) if ds is not None else 1.0)
    if isinstance(opt, _MUON) and p.dim() == 2 and scales.width_dims:
        adjust = group.get("adjust_lr_fn")
        f *= muon_factor(adjust, scales.base_shape(p.shape)) / muon_factor(adjust, p.shape)
    return f


def _split_group(
    group: Dict[str, Any], owned: Dict[int, Tuple[str, ParamScales]], options: Dict[str, Any], widths: str, opt: Any = None,
    depth: Optional[Dict[int, Tuple[str, DepthScales]]] = None,
) -> List[Dict[str, Any]]:
    """One param group re-split into one group per distinct (lr factor, eps factors), with its options kept.

    A tensor inside a residual branch also gets the depth factors of docs/theory.md section 12."""
    fam = options["family"]
    scale_eps = options["scale_eps"]
    depth = depth or {}
    # Tensors of different roles that train alike share a group, since every group costs a pass of the optimizer's loop.
    buckets: Dict[Tuple[float, ...], Tuple[ParamScales, float, List[torch.Tensor]]] = {}
    for p in group["params"]:
        scales = owned[id(p)][1] if id(p) in owned else UNIT_SCALES
        ds = depth[id(p)][1] if id(p) in depth else None
        lr_f = _lr_factor(scales, fam, p, group, opt, ds)
        eps_f = _eps_factors(scales, fam, scale_eps, ds)
        key = (lr_f,) + eps_f
        if key in buckets and buckets[key][0].role != scales.role:
            buckets[key] = (buckets[key][0]._replace(role="mixed"), lr_f, buckets[key][2])
        buckets.setdefault(key, (scales, lr_f, []))[2].append(p)
    out = []
    for key, (scales, lr_scale, params) in buckets.items():
        eps_f = key[1:]
        new = {k: v for k, v in group.items() if k != "params"}
        new["params"] = params
        new["lr"] = _scale(group["lr"], lr_scale)
        eps = group.get("eps")
        if fam == "adam" and isinstance(eps, (int, float)) and not isinstance(eps, bool):
            new["eps"] = eps * eps_f[0]
        elif fam == "relative" and isinstance(eps, (tuple, list)) and len(eps) == 2:  # Adafactor: (eps1 or None, eps2)
            new["eps"] = (None if eps[0] is None else eps[0] * eps_f[0], eps[1] * eps_f[1])
        if isinstance(group.get("step_sizes"), (tuple, list)):  # Rprop: the bounds on its steps scale with the rate
            new["step_sizes"] = tuple(x * lr_scale for x in group["step_sizes"])
        wd = group.get("weight_decay", 0.0)
        if wd:
            if options["weight_decay"] == "coupled":
                new["weight_decay"] = wd / lr_scale
            elif float(new["lr"]) == 0.0:
                raise ValueError("weight_decay: 'independent' decay needs a nonzero learning rate in every group")
            else:
                new["weight_decay"] = wd / float(new["lr"])
        new["abc_lr_scale"] = lr_scale
        new["abc_eps_scale"] = eps_f[0]
        new["abc_role"] = scales.role
        new["abc_family"] = fam
        new["abc_widths"] = widths
        out.append(new)
    return out


def _eps_factors(scales: ParamScales, fam: str, scale_eps: bool, ds: Optional[DepthScales]) -> Tuple[float, float]:
    """(factor on Adam's eps or Adafactor's eps1, factor on Adafactor's eps2) for one tensor (sections 10-12; inside
    a residual branch the gradient, so eps1, also carries the depth factor)."""
    if not scale_eps or fam not in ("adam", "relative"):
        return (1.0, 1.0)
    return (scales.eps * (ds.eps if ds is not None else 1.0), scales.rms if fam == "relative" else 1.0)


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
        owned, widths, depth = _owned_scales(m), _model_widths(m), depth_scales(m)
        groups: List[Dict[str, Any]] = []
        for i, g in enumerate(opt.param_groups):
            groups.extend(_split_group(g, owned, options, widths, opt, depth) if i in fresh else [g])
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

