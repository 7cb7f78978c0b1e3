"""How a model's forward uses its raw tensors: summed against the features, or applied coordinate by coordinate.

A raw tensor's shape tells which of its dimensions grow with the width, not
what the model does with it; the module's computation does (docs/theory.md
section 18).  Two uses give different roles to the same shape:

- **contracted**: the tensor is a weight, summed against the features
  (``F.linear``, ``matmul``, ``einsum``, a convolution): a readout when only
  its last dimension grows (a hyper-connection's mixing weights ``fn``, which
  DeepSeek-V4 passes to ``F.linear``), hidden when two grow;
- **elementwise**: the tensor scales, shifts or gates coordinates (``A =
  -exp(A_log)``, ``x * D``, a norm's gain): values per coordinate, vector-like
  however many of its dimensions grow (Mamba's ``A_log``, channel x state,
  whose state size grows with the width in a model built that way).

:class:`TensorUses` runs one forward of the model on an example input under
a ``TorchFunctionMode`` (``torch.no_grad``, every module in eval mode, each
module's mode restored after) and records, per parameter, which kind of
operation received it, following it through views, casts, indexing and splits.
An operation of neither list leaves the tensor's use unknown unless another
call settles it; a tensor used both ways counts as contracted.  The model is
only read: no parameter or buffer changes (in eval mode a batch norm does not
update its statistics).

The observation is one forward's, not a proof: a weight multiplied in and then
summed by hand (``(x * w).sum(-1)``) reads as elementwise.  ``roles=`` names
any tensor whose use it misreads.
"""

from __future__ import annotations

from typing import Any, Dict, Iterable, Optional, Set

from .. import torch_quiet  # noqa: F401  (torch without the numpy warning)
import torch
from torch import nn
from torch.overrides import TorchFunctionMode, resolve_name

__all__ = ["CONTRACTED", "ELEMENTWISE", "TensorUses", "observe_uses"]

CONTRACTED = "contracted"
ELEMENTWISE = "elementwise"

# operations that sum a tensor against the features (the last part of the name torch.overrides gives them)
_CONTRACTING = frozenset({
    "linear", "bilinear", "matmul", "__matmul__", "__rmatmul__", "mm", "bmm", "mv", "einsum", "tensordot",
    "addmm", "baddbmm", "addbmm", "addmv", "conv1d", "conv2d", "conv3d", "conv_transpose1d", "conv_transpose2d",
    "conv_transpose3d", "_grouped_mm", "grouped_mm", "scaled_dot_product_attention",
})
# the position of the argument a contracting operation adds to its result (F.linear's bias, addmm's input)
_ADDED = {"linear": 2, "conv1d": 2, "conv2d": 2, "conv3d": 2, "conv_transpose1d": 2, "conv_transpose2d": 2,
          "conv_transpose3d": 2, "bilinear": 3, "addmm": 0, "baddbmm": 0, "addbmm": 0, "addmv": 0}
# operations that apply a tensor coordinate by coordinate
_ELEMENTWISE = frozenset({
    "add", "__add__", "__radd__", "__iadd__", "sub", "__sub__", "__rsub__", "rsub", "mul", "__mul__", "__rmul__",
    "div", "__truediv__", "__rtruediv__", "true_divide", "neg", "__neg__", "exp", "exp2", "expm1", "log", "log1p",
    "pow", "__pow__", "__rpow__", "sigmoid", "tanh", "softplus", "silu", "relu", "gelu", "abs", "sqrt", "rsqrt",
    "square", "clamp", "clip", "where", "addcmul", "addcdiv", "lerp", "maximum", "minimum", "layer_norm", "rms_norm",
    "group_norm", "batch_norm", "instance_norm",
})
# operations whose result is the same tensor seen another way: the use of the result is the use of the tensor
_PASSING = frozenset({
    "float", "double", "half", "bfloat16", "to", "type", "type_as", "view", "view_as", "reshape", "reshape_as",
    "__getitem__", "t", "T", "mT", "transpose", "permute", "unsqueeze", "squeeze", "expand", "expand_as",
    "contiguous", "clone", "detach", "flatten", "unflatten", "select", "narrow", "split", "chunk", "unbind",
    "tensor_split", "movedim", "swapaxes", "repeat", "repeat_interleave", "broadcast_to",
})
# operations that read a tensor's metadata, not its values: no use
_NEUTRAL = frozenset({
    "shape", "dtype", "device", "size", "dim", "ndim", "numel", "nelement", "stride", "is_floating_point",
    "is_complex", "requires_grad", "is_contiguous", "layout", "element_size", "data_ptr", "__len__", "is_cuda",
    "is_meta", "names", "grad_fn", "__format__", "__repr__", "__hash__", "__bool__", "item", "tolist",
})


def _op_name(func: Any) -> str:
    """``func``'s last name part (``torch.Tensor.T.__get__`` -> ``T``)."""
    try:
        name = resolve_name(func) or getattr(func, "__name__", "")
    except Exception:  # an object torch.overrides cannot name
        name = getattr(func, "__name__", "")
    parts = [p for p in str(name).split(".") if p != "__get__"]
    return parts[-1] if parts else ""


class _Recorder(TorchFunctionMode):
    """Follows the parameters through one forward and records each one's uses."""

    def __init__(self, names: Dict[int, str]) -> None:
        super().__init__()
        self.source: Dict[int, str] = dict(names)  # id of a tensor -> the parameter it shows
        self.alive: list = []  # every tracked result, so that no id is reused during the forward
        self.uses: Dict[str, Set[str]] = {}

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        op = _op_name(func)
        if op in _NEUTRAL:
            return out
        if op in _PASSING:
            name = self.source.get(id(args[0])) if args else None
            if name is not None:  # the result shows the same tensor: its uses are the tensor's
                for t in _tensors((out,)):
                    self.source[id(t)] = name
                    self.alive.append(t)
            return out
        kind = CONTRACTED if op in _CONTRACTING else ELEMENTWISE if op in _ELEMENTWISE else "other"
        added = _ADDED.get(op)  # the argument such an operation adds to its result (a bias): elementwise
        given = [(i == added, a) for i, a in enumerate(args)]
        given += [(k == "bias" and added is not None, a) for k, a in kwargs.items()]
        for is_added, a in given:
            for t in _tensors((a,)):
                if id(t) in self.source:
                    self.uses.setdefault(self.source[id(t)], set()).add(ELEMENTWISE if is_added else kind)
        return out


def _tensors(values: Iterable[Any]):
    """The tensors among ``values``, one level into lists and tuples."""
    for a in values:
        if isinstance(a, torch.Tensor):
            yield a
        elif isinstance(a, (list, tuple)):
            yield from (b for b in a if isinstance(b, torch.Tensor))


def observe_uses(model: nn.Module, example: Any) -> Dict[str, str]:
    """{parameter name: ``"contracted"`` or ``"elementwise"``} from one forward of ``model`` on ``example`` (a
    tensor, a tuple of positional arguments, or a dict of keyword arguments).  A parameter the forward does not
    reach, or reaches only through other operations, is left out."""
    names = {id(p): name for name, p in model.named_parameters()}
    recorder = _Recorder(names)
    modes = {m: m.training for m in model.modules()}
    try:
        model.eval()
        with torch.no_grad(), recorder:
            if isinstance(example, dict):
                model(**example)
            elif isinstance(example, (tuple, list)):
                model(*example)
            else:
                model(example)
    finally:
        for m, training in modes.items():
            m.training = training
    found = {}
    for name, kinds in recorder.uses.items():
        if CONTRACTED in kinds:
            found[name] = CONTRACTED
        elif kinds == {ELEMENTWISE}:
            found[name] = ELEMENTWISE
    return found


class TensorUses:
    """The uses of a model's parameters, observed once, when first asked (a forward costs; most conversions have no
    raw tensor to settle).

    ``example``: the input to observe the forward on; None takes the model's ``dummy_inputs`` (HF transformers'
    models have one), else nothing is observed.  A forward that fails on an example the model offered itself is
    recorded in ``failure`` and observes nothing; on an example the user gave, it is a ``ValueError``.
    """

    def __init__(self, model: nn.Module, example: Any = None) -> None:
        self.model = model
        self.example = example
        self.failure = ""
        self._found: Optional[Dict[str, str]] = None

    def of(self, name: str) -> Optional[str]:
        """``"contracted"``, ``"elementwise"`` or None (not observed) for the parameter ``name``."""
        if self._found is None:
            self._found = self._observe()
        return self._found.get(name)

    def _observe(self) -> Dict[str, str]:
        given = self.example is not None
        example = self.example if given else getattr(self.model, "dummy_inputs", None)
        if example is None:
            return {}
        try:
            return observe_uses(self.model, example)
        except Exception as e:  # the model's forward refused the input
            if given:
                raise ValueError(f"example: the model's forward failed on it ({type(e).__name__}: {e}); pass an input "
                                 "the model accepts (a tensor, a tuple of arguments or a dict of keyword arguments)") from e
            self.failure = f"{type(e).__name__}: {e}"
            return {}
