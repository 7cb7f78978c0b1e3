"""What the width check measures on one model at one width and seed: every tracked module's output at
initialisation and its change after each step (docs/theory.md section 8), as a :class:`Measurement`."""

from __future__ import annotations

import math
from fractions import Fraction
from typing import Any, Callable, Dict, List, Mapping, NamedTuple, Optional, Sequence, Tuple

from .. import torch_quiet  # noqa: F401  (torch without the numpy warning)
import torch
from torch import nn

from .. import theory
from ..layers import abc_modules, is_abc_layer
from .engine import Batch, make_optimizer, observe, output_tensor, rms, seeded_build, split_batch, train_step


def readout_bias(mod: nn.Module) -> Optional[torch.Tensor]:
    """The bias of an abcparam readout (role output), which the theory's f_0 and Delta f leave out."""
    if getattr(mod, "role", None) == "output" and is_abc_layer(mod) and isinstance(getattr(mod, "bias", None), torch.Tensor):
        return mod.bias
    return None


class Declared:
    """A module that is not an abcparam layer, seen through exponents declared for it (``coord_check(exponents=...)``,
    as :func:`abcparam.inspect` infers them): what the prediction reads from an abcparam layer."""

    def __init__(self, module: nn.Module, role: str, a: Fraction, b: Fraction, c: Fraction, family: str) -> None:
        self.module, self.role, self.a, self.b = module, role, a, b
        setattr(self, "c_" + family, c)
        bias = getattr(module, "bias", None)  # a tensor, or None, or (in some model code) a flag such as bias=True
        self.bias = bias if isinstance(bias, torch.Tensor) else None

    def abc_scales(self) -> Dict[str, Any]:
        return {}


def check_declared(exponents: Any) -> Dict[str, Tuple[str, Fraction, Fraction, Fraction, str]]:
    if exponents is None:
        return {}
    if not isinstance(exponents, Mapping):
        raise TypeError(f"exponents: expected a mapping module name -> (role, a, b, c, family), got {type(exponents).__name__}")
    out = {}
    for name, v in exponents.items():
        if not (isinstance(v, (tuple, list)) and len(v) == 5 and v[0] in ("input", "hidden", "output")):
            raise ValueError(f"exponents: {name!r} -> {v!r}; expected (role, a, b, c, family) with role input, hidden or output")
        out[name] = (v[0], theory.exponent(v[1], f"{name}.a"), theory.exponent(v[2], f"{name}.b"),
                     theory.exponent(v[3], f"{name}.c"), theory.optimizer_family(v[4]))
    return out


class Recorder:
    """Forward hooks that keep every call's output of the tracked modules (a module called twice is kept twice)."""

    def __init__(self, modules: Dict[str, nn.Module], views: Optional[Dict[str, "Declared"]] = None):
        self.views = views or {}  # modules seen through declared exponents: their readout bias is left out too
        self.order: List[str] = []
        self.outputs: Dict[str, List[torch.Tensor]] = {}
        self.handles = [m.register_forward_hook(self._hook(name)) for name, m in modules.items()]

    def _hook(self, name: str) -> Callable[..., None]:
        def hook(mod: nn.Module, _inp: Any, out: Any) -> None:
            t = output_tensor(out)
            if t is None:
                return
            bias = readout_bias(self.views.get(name, mod))
            if bias is not None:
                t = t - bias.detach()  # the weight term: a readout bias is order one at every width
            if name not in self.outputs:
                self.outputs[name] = []
                self.order.append(name)
            self.outputs[name].append(t.detach().float().clone())

        return hook

    def take(self) -> Dict[str, List[torch.Tensor]]:
        """Every call's output since the last take, by module, in call order, as shaped."""
        out, self.outputs = self.outputs, {}
        return out

    def close(self) -> None:
        for h in self.handles:
            h.remove()


def main_tensor(mod: nn.Module) -> Any:
    """The tensor whose optimizer family stands for an abcparam module's: its weight, else (abcparam's
    MultiheadAttention) the first tensor it owns."""
    if hasattr(mod, "weight"):
        return mod.weight
    owned = list(mod.abc_scales())
    return getattr(mod, owned[0]) if owned else None


def flat(ts: List[torch.Tensor]) -> torch.Tensor:
    return torch.cat([t.flatten() for t in ts])


def token_ids(args: Tuple[Any, ...], kwargs: Dict[str, Any]) -> Optional[torch.Tensor]:
    """The model's input token ids: its first positional input or ``input_ids=``, when an integer tensor."""
    ids = args[0] if args else kwargs.get("input_ids")
    if isinstance(ids, torch.Tensor) and not ids.is_floating_point() and not ids.is_complex() and ids.dtype != torch.bool:
        return ids
    return None


def record_init(values: Dict[Tuple[str, str, int], float], name: str, q: str, ts: List[torch.Tensor],
                 ids: Optional[torch.Tensor]) -> None:
    """The RMS of a quantity at initialisation; for the logits of a tied readout (``ids`` given), split by token:
    ``q`` over the tokens other than each position's input token, ``q + "_own"`` over the input token's own logit
    (docs/theory.md section 14: the residual stream carries the input token's embedding, so its logit is larger)."""
    t = ts[0] if len(ts) == 1 else None
    if (ids is not None and t is not None and t.dim() >= 1 and t.shape[:-1] == ids.shape and ids.numel()
            and int(ids.min()) >= 0 and int(ids.max()) < t.shape[-1]):
        own = nn.functional.one_hot(ids.long(), t.shape[-1]).bool()
        values[(name, q, 0)] = rms(t[~own])
        values[(name, q + "_own", 0)] = rms(t[own])
        return
    values[(name, q, 0)] = rms(flat(ts))


class Measurement(NamedTuple):
    """What one model at one width and seed gave: ``values[(module, quantity, step)]`` (the RMS of each measured
    quantity, and the training loss as ``("loss", "loss", step)``), the measured modules in call order and by
    name, their optimizer families (by tensor name, or None), and the trained tensors no abcparam layer owns."""

    values: Dict[Tuple[str, str, int], float]
    order: List[str]
    modules: Dict[str, nn.Module]
    families: Optional[Dict[str, str]]
    unowned: List[str]


def measure(
    build: Callable[[int], nn.Module],
    width: int,
    seed: int,
    batch: Batch,
    optimizer: Any,
    lr: float,
    steps: int,
    loss_fn: Callable[[Any, Any], torch.Tensor],
    extra: Sequence[str],
    family: Optional[str],
    attention_calls: Optional[List[Tuple[int, float]]] = None,
    declared: Optional[Dict[str, Tuple[str, Fraction, Fraction, Fraction, str]]] = None,
) -> Measurement:
    model = seeded_build(build, width, seed)
    tracked = dict(abc_modules(model))
    named = dict(model.named_modules())
    declared = declared or {}
    for name in list(extra) + list(declared):
        if name not in named:
            raise ValueError(f"{'modules' if name in extra else 'exponents'}: the model has no module named {name!r}")
        tracked.setdefault(name, named[name])
    opts, fam, unowned_names = _train_setup(model, named, tracked, declared, optimizer, lr, steps, family)
    args, kwargs, y = split_batch(batch)
    # what the prediction reads: abcparam layers themselves, other modules through their declared exponents
    views = {n: Declared(named[n], *d) for n, d in declared.items() if not is_abc_layer(named[n])}
    seen_as = {n: views.get(n, m) for n, m in tracked.items()}
    rec = Recorder(tracked, views)
    values: Dict[Tuple[str, str, int], float] = {}
    ids = token_ids(args, kwargs)
    tables = {id(m.weight) for m in named.values() if isinstance(m, nn.Embedding)}
    tied = [n for n, m in tracked.items() if getattr(seen_as[n], "role", None) == "output" and id(getattr(m, "weight", None)) in tables]
    tied = tied if ids is not None else []  # readouts sharing an embedding's table: their logits are split by token
    try:
        def look() -> Tuple[Dict[str, List[torch.Tensor]], Optional[torch.Tensor]]:
            f = output_tensor(observe(model, args, kwargs))
            return rec.take(), None if f is None else f.detach().float().clone()

        if attention_calls is not None:  # every F.scaled_dot_product_attention call of the first forward, with its scale
            from ..attention import ScaleObserver, module_scales

            with ScaleObserver() as seen:
                h0, f0 = look()
            # none: logits computed inline (HF's eager attention); the scales its attention modules expose instead
            attention_calls.extend(seen.calls or module_scales(model))
        else:
            h0, f0 = look()
        order = list(rec.order)
        for name, ts in h0.items():
            record_init(values, name, "h", ts, ids if name in tied else None)
        if f0 is not None:
            record_init(values, "output", "f", [f0], ids if tied else None)
        h0 = {name: flat(ts) for name, ts in h0.items()}
        if steps == 0:
            return Measurement(values, order, seen_as, fam, unowned_names)
        for step in range(1, steps + 1):
            values[("loss", "loss", step - 1)] = train_step(model, opts, loss_fn, args, kwargs, y)
            rec.take()  # the training forward's outputs: not measured
            ht, ft = look()
            for name, ts in ht.items():
                t = flat(ts)
                values[(name, "dh", step)] = rms(t - h0[name]) if t.shape == h0[name].shape else math.nan
            if ft is not None and f0 is not None:
                values[("output", "df", step)] = rms(ft - f0)
    finally:
        rec.close()
    return Measurement(values, order, seen_as, fam, unowned_names)


def _train_setup(model: nn.Module, named: Dict[str, nn.Module], tracked: Dict[str, nn.Module],
                 declared: Dict[str, Tuple[str, Fraction, Fraction, Fraction, str]], optimizer: Any, lr: float, steps: int,
                 family: Optional[str]) -> Tuple[List[torch.optim.Optimizer], Optional[Dict[str, str]], List[str]]:
    """The optimizers (none for ``steps == 0``: initialisation only), the family that trains each abcparam layer's
    weight (a hybrid set-up has several; None without optimizers), and the trained tensors no abcparam layer owns.
    The modules that train such tensors are added to ``tracked``: measured, not predicted (a plain ``nn.Linear``
    whose learning rate is not scaled shows itself by growing with width)."""
    owned_ids = {id(p) for m in abc_modules(model).values() for n in m.abc_scales() for p in [getattr(m, n, None)] if p is not None}
    owned_ids |= {id(p) for n in declared for p in named[n].parameters(recurse=False)}  # predicted from their exponents
    fam: Optional[Dict[str, str]] = None
    if steps == 0:
        opts: List[torch.optim.Optimizer] = []
        trained = {id(p) for p in model.parameters() if p.requires_grad}
    else:
        opts = make_optimizer(optimizer, model, lr, family)
        trained = {id(p) for o in opts for g in o.param_groups for p in g["params"]}
        by_tensor = {id(p): g.get("abc_family") for o in opts for g in o.param_groups for p in g["params"]}
        fam = {n: by_tensor.get(id(main_tensor(m))) for n, m in abc_modules(model).items()}
        fam.update({n: d[4] for n, d in declared.items() if by_tensor.get(id(getattr(named[n], "weight", None)))})
    unowned = [n for n, p in model.named_parameters() if id(p) in trained and id(p) not in owned_ids]
    for name, mod in named.items():
        if name and name not in tracked and any(id(p) in trained and id(p) not in owned_ids for p in mod.parameters(recurse=False)):
            tracked[name] = mod
    return opts, fam, unowned
