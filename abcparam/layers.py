"""Drop-in layers: ``Linear``, ``Embedding`` and ``TiedReadout`` with abc-exponents.

Each layer reads its role's exponents and the width multiplier m from a
:class:`~abcparam.Parametrization` once, in ``__init__``, and keeps them as
plain Python numbers on the module (shown by ``extra_repr``).  The forward pass
multiplies by ``alpha * m^-a``; ``reset_parameters`` draws the stored tensor
from ``N(0, (sigma * m^-b)^2)``; the learning-rate factor ``m^-c`` and Adam's
epsilon factor ``m^-d`` are read by :func:`abcparam.wrap` (docs/theory.md sections 1,
7 and 10).  Parameters keep the names ``weight`` and ``bias``, so a checkpoint
loads into ``nn.Linear`` / ``nn.Embedding`` and back; existing weights are never
rescaled.

>>> import torch, abcparam
>>> p = abcparam.mup(width=256, base_width=64)
>>> layer = abcparam.Linear(256, 10, role="output", param=p)
>>> layer.weight_multiplier, sorted(layer.state_dict())
(0.5, ['bias', 'weight'])
"""

from __future__ import annotations

import math
from typing import Any, Dict, NamedTuple, Optional, Protocol, Sequence, Tuple, runtime_checkable

from . import torch_quiet  # noqa: F401  (torch without the numpy warning)
import torch
import torch.nn.functional as F
from torch import nn

from .roles import infer_role, size_kind
from .theory.parametrizations import Parametrization
from . import validate
from .validate import positive_int as _positive_int

__all__ = ["AbcLayer", "ParamScales", "Linear", "Embedding", "TiedReadout", "abc_modules", "is_abc_layer"]



class ParamScales(NamedTuple):
    """Width factors of one trained tensor, read by the optimizer wrapper.

    ``role`` is the role whose exponents apply (``vector`` for biases, ``none``
    for tensors with no width dimension such as the readout bias).  ``lr_*``
    are the learning-rate factors m^-c per optimizer family, ``eps`` Adam's
    epsilon factor m^-d (docs/theory.md section 10), ``rms`` the stored
    tensor's init scale m^-b (Adafactor's eps2 follows it, section 11),
    ``width_dims`` the dimensions of the stored tensor that grow with the
    width and ``width_mult`` m (torch Muon's own width factor is computed
    from the shape at base width, which they give).
    """

    role: str
    lr_sgd: float
    lr_adam: float
    eps: float
    lr_spectral: float = 1.0
    lr_relative: float = 1.0
    rms: float = 1.0
    width_dims: Tuple[int, ...] = ()
    width_mult: float = 1.0

    def lr(self, family: str) -> float:
        return getattr(self, "lr_" + family)

    def base_shape(self, shape: Sequence[int]) -> Tuple[float, ...]:
        """The tensor's shape at base width: its width-sized dimensions divided by m."""
        return tuple(d / self.width_mult if i in self.width_dims else float(d) for i, d in enumerate(shape))


UNIT_SCALES = ParamScales("none", 1.0, 1.0, 1.0)


def scales_for(param: Parametrization, role: str, width_dims: Tuple[int, ...] = ()) -> ParamScales:
    return ParamScales(
        role,
        param.lr_scale(role, "sgd"),
        param.lr_scale(role, "adam"),
        param.eps_scale(role),
        param.lr_scale(role, "spectral"),
        param.lr_scale(role, "relative"),
        param.init_scale(role),
        width_dims,
        float(param.width_mult),
    )


# The width-sized dimensions of a weight of shape (out_features, in_features) for each role.
_LINEAR_WIDTH_DIMS = {"input": (0,), "hidden": (0, 1), "output": (1,)}


def role_config(param: Parametrization, role: str, alpha: float, sigma: float, fold: bool,
                 width_dims: Tuple[int, ...]) -> Dict[str, Any]:
    """The plain numbers a layer of ``role`` keeps on itself: exponents, m, multiplier, init std, width factors.

    With ``fold`` the width multiplier m^-a is folded into the stored tensor (the
    a = 0 form of docs/theory.md section 2, applied to this layer alone): the
    tensor is drawn at the effective scale ``sigma * m^-(a+b)`` and trained with
    the a = 0 form's learning-rate and epsilon factors, which is the same
    training (exactly for SGD; for Adam with the wrapper's epsilon scaling) and
    costs nothing in the forward pass.  ``a, b, c_*`` stay the declared exponents.
    """
    ex = param.role(role)  # raises if the role is missing (mean field has no hidden)
    stored = param.canonical() if fold else param
    folded = param.multiplier(role) if fold else 1.0
    return {
        "role": role,
        "param_name": param.name,
        "width": param.width,
        "base_width": param.base_width,
        "width_mult": float(param.width_mult),
        "a": ex.a,
        "b": ex.b,
        "c_sgd": ex.c_sgd,
        "c_adam": ex.c_adam,
        "c_spectral": ex.c_spectral,
        "c_relative": ex.c_relative,
        "attention": param.attention,
        "alpha": alpha,
        "sigma": sigma,
        "folded": bool(fold),
        "folded_multiplier": folded,
        "weight_multiplier": alpha * stored.multiplier(role),
        "init_std": sigma * stored.init_scale(role),
        "_weight_scales": scales_for(stored, role, width_dims),
    }


def check_fold(fold: Any, role: str) -> bool:
    """``fold`` defaults to True for input layers (zero forward cost) and False elsewhere."""
    if fold is None:
        return role == "input"
    if not isinstance(fold, bool):
        raise TypeError(f"fold: expected True, False or None (default: True for input layers), got {fold!r}")
    return fold


_compiling = getattr(getattr(torch, "compiler", None), "is_compiling", None) or (lambda: False)


def scaled_linear(x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor], wm: float) -> torch.Tensor:
    """y = wm * x W^T + b: plain ``F.linear`` when wm == 1, else one elementwise pass on the smallest operand.

    The factor goes on the input, the weight or the output, whichever has the
    fewest numbers; on the output it is fused with the bias into one pass
    (``torch.add(b, y, alpha=wm)``; under ``torch.compile`` the bias goes into
    the matmul divided by the factor instead, since inductor drops that
    ``alpha``), as a readout to a few classes wants.  The
    extra work is one pass over min(batch x in, in x out, batch x out)
    numbers; the choice depends only on shapes, so it is static under
    ``torch.compile``.
    """
    if wm == 1.0:
        return F.linear(x, weight, bias)
    n_in, n_w = x.numel(), weight.numel()
    n_out = n_in // weight.shape[1] * weight.shape[0]
    smallest = min(n_in, n_w, n_out)
    if n_out == smallest and n_out < n_in:
        if bias is None:
            return F.linear(x, weight) * wm
        if _compiling():
            # inductor fuses torch.add(bias, x @ W^T, alpha=wm) into addmm and drops alpha (torch 2.13, 2-D inputs):
            # compiled, the bias enters the matmul pre-divided and one pass scales the output
            return F.linear(x, weight, bias / wm) * wm
        return torch.add(bias, F.linear(x, weight), alpha=wm)  # eager: one fused pass for the factor and the bias
    if n_w == smallest:
        return F.linear(x, weight * wm, bias)
    return F.linear(x * wm, weight, bias)


class WeightedLayer:
    """What every abcparam layer shares: its width factors, effective weight and repr."""

    weight: torch.Tensor
    weight_multiplier: float

    def abc_scales(self) -> Dict[str, ParamScales]:
        """Learning-rate and epsilon factors per parameter name, for :func:`abcparam.wrap`."""
        return {"weight": self._weight_scales, **({"bias": self._bias_scales} if hasattr(self, "_bias_scales") else {})}

    def effective_weight(self) -> torch.Tensor:
        """W = alpha * m^-a * w, the weight the forward pass uses."""
        return self.weight * self.weight_multiplier

    def reset_parameters(self) -> None:
        """Draw ``weight ~ N(0, init_std^2)`` (or zeros, with ``zero_init``) and the bias uniform in
        ``+-bias_bound``; idempotent, never rescales."""
        with torch.no_grad():
            if getattr(self, "zero_init", False):
                self.weight.zero_()
            else:
                self.weight.normal_(0.0, self.init_std)
            if getattr(self, "bias", None) is not None:
                self.bias.uniform_(-self.bias_bound, self.bias_bound)

    def _abc_repr(self) -> str:
        return (
            f"role={self.role}, param={self.param_name}, m={self.width_mult:g}, "
            f"a={self.a}, b={self.b}, c_sgd={self.c_sgd}, c_adam={self.c_adam}, "
            f"multiplier={self.weight_multiplier:g}{' (folded into the weight)' if self.folded else ''}, "
            f"init_std={self.init_std:.4g}"
        )


def _sizes_and_param(param: Any, **sizes: Any) -> Tuple[Tuple[int, ...], Parametrization]:
    """A layer's first checks: each size a positive int (the error names it), then the parametrization."""
    checked = tuple(_positive_int(value, name) for name, value in sizes.items())
    return checked, Parametrization.require(param)


class Linear(WeightedLayer, nn.Linear):
    """``nn.Linear`` with an abc-parametrization (docs/theory.md section 1, "Practical form").

    Args:
        role: ``"input"`` (fixed fan-in -> width), ``"hidden"`` (width -> width)
            or ``"output"`` (the readout, width -> fixed fan-out).  Default:
            inferred from which dimensions are width-sized at ``param``'s width
            (whole multiples of it) and which are fixed (smaller and not
            divisors of it, or at most width / 16); when the shapes cannot
            decide (32 inputs at width 96 could be a data size or a quarter of
            the width), or rule out a role given explicitly, the layer is
            refused with the reason.
        param: the :class:`~abcparam.Parametrization` (exponents and m).
        alpha: forward-multiplier constant at base width (default 1).
        sigma: init std at base width; default the usual fan-in scale
            ``1/sqrt(fan_in / m)`` for width-sized fan-in, ``1/sqrt(fan_in)``
            for the input layer.
        zero_init: initialise the weight to zero (common for muP readouts).
        fold: store the effective weight (the multiplier m^-a folded into
            the init and the learning rate, section 2) instead of applying the
            multiplier in the forward pass.  Default: True for input layers,
            False for hidden and output layers.  It trains identically (exactly
            under SGD, and under Adam with :func:`abcparam.wrap`'s epsilon
            scaling); with ``scale_eps=False`` Adam's epsilon is seen against
            gradients m^a times another size, so pass ``fold=False`` to
            reproduce an unfolded run bit for bit.

    The bias is vector-like (the input layer's exponents, section 7) for input
    and hidden layers, and is stored as its effective value: its multiplier
    m^-a_1 is folded into its init and learning rate (the a = 0 form of the
    symmetry, exact for SGD and, with the wrapper's epsilon scaling, for Adam),
    so it costs nothing in the forward pass.  The readout's bias has no width
    dimension and keeps Theta(1) everything.  It starts like ``nn.Linear``'s at
    base width: uniform in +-1/sqrt(fan_in / m), times m^-(a_1 + b_1).
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        *,
        role: Optional[str] = None,
        param: Optional[Parametrization] = None,
        alpha: float = 1.0,
        sigma: Optional[float] = None,
        zero_init: bool = False,
        fold: Optional[bool] = None,
        device: Any = None,
        dtype: Any = None,
    ) -> None:
        (in_features, out_features), param = _sizes_and_param(param, in_features=in_features, out_features=out_features)
        role = infer_role(in_features, out_features, role, param)
        alpha_ = validate.real(alpha, "alpha", zero_ok=False)
        if not isinstance(bias, bool):
            raise TypeError(f"bias: expected True or False, got {bias!r}")
        fold_ = check_fold(fold, role)
        fan_in_base = in_features if role == "input" else in_features / float(param.width_mult)
        sigma_ = 1.0 / math.sqrt(fan_in_base) if sigma is None else validate.real(sigma, "sigma", zero_ok=True)
        config = role_config(param, role, alpha_, sigma_, fold_, _LINEAR_WIDTH_DIMS[role])
        config["zero_init"] = bool(zero_init)
        config["bias_bound"] = 1.0 / math.sqrt(fan_in_base)
        if role == "output":
            config["_bias_scales"] = UNIT_SCALES
        else:
            # The bias is stored as its effective value: its vector-like multiplier m^-a_1 is
            # folded into its init and learning rate (the a = 0 form of docs/theory.md section 2),
            # which trains identically and costs nothing in the forward pass.
            folded = param.canonical()
            config["bias_bound"] *= folded.init_scale("vector")
            config["_bias_scales"] = scales_for(folded, "vector", (0,))
        self.__dict__.update(config)  # plain numbers, set before nn.Linear calls reset_parameters
        super().__init__(in_features, out_features, bias, device=device, dtype=dtype)

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        return scaled_linear(input, self.weight, self.bias, self.weight_multiplier)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, {self._abc_repr()}"


# what Embedding.from_pretrained passes on to the constructor by name
_PRETRAINED_OPTIONS = ("max_norm", "norm_type", "scale_grad_by_freq", "sparse", "param", "alpha", "sigma", "fold")


class Embedding(WeightedLayer, nn.Embedding):
    """``nn.Embedding`` as an abc input layer (one-hot input, fixed fan-in).

    The effective table is ``alpha * m^-a * w`` with ``w ~ N(0, (sigma * m^-b)^2)``
    (sigma defaults to 1, ``nn.Embedding``'s scale).  By default (``fold=True``)
    the stored table *is* the effective one: the multiplier m^-a is folded into
    its init and learning rate (docs/theory.md section 2), so the lookup costs
    exactly what ``nn.Embedding``'s does and a checkpoint computes the same
    function in a plain ``nn.Embedding``.  ``fold=False`` stores ``w`` and
    multiplies every lookup.  ``padding_idx``'s row starts at zero and
    ``max_norm`` bounds the norm of the rows the forward pass returns, as in
    ``nn.Embedding``.  The embedding dimension must be width-sized.
    """

    def __init__(
        self,
        num_embeddings: int,
        embedding_dim: int,
        padding_idx: Optional[int] = None,
        max_norm: Optional[float] = None,
        norm_type: float = 2.0,
        scale_grad_by_freq: bool = False,
        sparse: bool = False,
        *,
        param: Optional[Parametrization] = None,
        alpha: float = 1.0,
        sigma: float = 1.0,
        fold: bool = True,
        _weight: Optional[torch.Tensor] = None,
        _freeze: bool = False,
        device: Any = None,
        dtype: Any = None,
    ) -> None:
        (num_embeddings, embedding_dim), param = _sizes_and_param(param, num_embeddings=num_embeddings,
                                                                  embedding_dim=embedding_dim)
        if size_kind(embedding_dim, param.width) == "fixed":
            raise ValueError(
                f"embedding_dim: {embedding_dim} is not width-sized at width {param.width} (a data size, smaller than the width), "
                "so this embedding does not grow with the network; use nn.Embedding, or build the parametrization at "
                "the embedding's own width"
            )
        if max_norm is not None:
            max_norm = validate.real(max_norm, "max_norm", zero_ok=False)
        config = role_config(param, "input", validate.real(alpha, "alpha", zero_ok=False), validate.real(sigma, "sigma", zero_ok=True),
                              check_fold(fold, "input"), (1,))
        self.__dict__.update(config)  # plain numbers, set before nn.Embedding calls reset_parameters
        super().__init__(
            num_embeddings, embedding_dim, padding_idx, max_norm, norm_type, scale_grad_by_freq, sparse,
            _weight=_weight if _weight is None or self.weight_multiplier == 1.0 else _weight / self.weight_multiplier,
            _freeze=_freeze, device=device, dtype=dtype,
        )

    @classmethod
    def from_pretrained(  # type: ignore[override]
        cls, embeddings: torch.Tensor, freeze: bool = True, padding_idx: Optional[int] = None, **options: Any
    ) -> "Embedding":
        """An embedding whose lookups return the rows of ``embeddings`` (as ``nn.Embedding.from_pretrained``).

        ``options`` are the constructor's other arguments by name (``max_norm``, ``norm_type``,
        ``scale_grad_by_freq``, ``sparse``, ``param``, ``alpha``, ``sigma``, ``fold``); the table sets the sizes,
        device and dtype.

        ``embeddings`` is the *effective* table, what the forward pass returns;
        the stored tensor is ``embeddings / weight_multiplier`` (the same tensor,
        not rescaled, in the default folded form).  It then trains with the
        parametrization's learning-rate factor.

        >>> import torch, abcparam
        >>> table = torch.randn(10, 256)
        >>> e = abcparam.Embedding.from_pretrained(table, param=abcparam.mup(256, 64))
        >>> torch.equal(e(torch.tensor([3])), table[3:4]), e.weight.requires_grad
        (True, False)
        """
        if not isinstance(embeddings, torch.Tensor) or embeddings.dim() != 2:
            raise ValueError(f"embeddings: expected a 2-D tensor (num_embeddings x embedding_dim), got {embeddings!r:.80}")
        if not isinstance(freeze, bool):
            raise TypeError(f"freeze: expected True or False, got {freeze!r}")
        unknown = sorted(set(options) - set(_PRETRAINED_OPTIONS))
        if unknown:
            raise TypeError(f"from_pretrained: unexpected argument(s) {', '.join(unknown)}; allowed: embeddings, freeze, "
                            f"padding_idx, {', '.join(_PRETRAINED_OPTIONS)}")
        rows, cols = embeddings.shape
        return cls(rows, cols, padding_idx, _weight=embeddings, _freeze=freeze, device=embeddings.device,
                   dtype=embeddings.dtype, **options)

    def reset_parameters(self) -> None:
        with torch.no_grad():
            self.weight.normal_(0.0, self.init_std)
        self._fill_padding_idx_with_zero()

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        wm = self.weight_multiplier
        if wm == 1.0:
            return super().forward(input)
        # max_norm bounds the rows of the *effective* table: the stored rows are renormalised to max_norm / wm
        max_norm = None if self.max_norm is None else self.max_norm / wm
        out = F.embedding(input, self.weight, self.padding_idx, max_norm, self.norm_type, self.scale_grad_by_freq, self.sparse)
        return out * wm

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, {self._abc_repr()}"


class Conv1D(Linear):
    """:class:`Linear` with its weight stored ``in_features x out_features``, as HF transformers' ``Conv1D`` (GPT-2)
    stores it: the same parametrization, the same state_dict keys and shapes as the module it replaces, so a
    checkpoint of the original model loads into the converted one.  ``nf``/``nx`` mirror HF's attribute names.

    >>> import torch, abcparam
    >>> c = Conv1D(64, 256, role="input", param=abcparam.mup(256, 64))
    >>> tuple(c.weight.shape), c(torch.randn(3, 64)).shape
    ((64, 256), torch.Size([3, 256]))
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True, **kwargs: Any) -> None:
        super().__init__(in_features, out_features, bias, **kwargs)
        with torch.no_grad():
            self.weight = nn.Parameter(self.weight.detach().t().contiguous())
        self.nx, self.nf = in_features, out_features
        s = self._weight_scales
        self._weight_scales = s._replace(width_dims=tuple(1 - d for d in s.width_dims))

    def reset_parameters(self) -> None:
        """Draw the weight as :class:`Linear` does (its layout does not change the distribution)."""
        Linear.reset_parameters(self)

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        return scaled_linear(input, self.weight.t(), self.bias, self.weight_multiplier)

    def effective_weight(self) -> torch.Tensor:
        """W^T = alpha * m^-a * w, stored in x out like the weight itself."""
        return self.weight * self.weight_multiplier


def _tie_rates(ex: Any) -> Tuple[Any, ...]:
    """What one tensor shared by the input and output roles must agree on: b and c for every optimizer family."""
    return (ex.b, ex.c_sgd, ex.c_adam, ex.c_spectral, ex.c_relative)


def can_tie(param: Parametrization) -> bool:
    """Whether ``param`` lets one tensor be both the embedding and the readout (docs/theory.md section 7)."""
    return _tie_rates(param.role("input")) == _tie_rates(param.role("output"))


class TiedReadout(Linear):
    """A readout that shares an :class:`Embedding`'s table (``logits = m^-a_out * h E^T``).

    Rule for the shared tensor: it is initialised and trained with the
    embedding's (input-role) b and c; the readout contributes only its own
    forward multiplier ``alpha * m^-a_out``.  That is exact only when the
    parametrization gives the input and output roles the same b and the same
    c for both optimizer families, and then Adam's epsilon exponent d agrees
    too (docs/theory.md section 10: d_in - d_out = a_in + b_out = beta_1 = 0).  Both
    forms of muP qualify (Table 8: b = 0, c = -1 / 0; TP4: b = 1/2, c = 0 / 1/2),
    as does NTK; SP (b = 0 vs 1/2) is refused.  The Table 8 form is the usual
    choice: it keeps the table's stored entries at the embedding's own scale.
    ``alpha`` defaults to ``1 / (sigma_emb * sqrt(embedding_dim / m))`` so that
    the logits start as an untied readout's would (the table has the
    embedding's scale, not a readout's).  The state_dict holds ``weight`` (the
    shared tensor, as with a tied ``nn.Linear``) and ``bias`` if any.
    """

    def __init__(
        self, embedding: Embedding, *, param: Optional[Parametrization] = None, bias: bool = False, alpha: Optional[float] = None
    ) -> None:
        if not isinstance(embedding, Embedding):
            raise TypeError(f"embedding: expected an abcparam.Embedding, got {type(embedding).__name__}")
        param = Parametrization.require(param)
        inp, out = param.role("input"), param.role("output")
        if not can_tie(param):
            raise ValueError(
                f"param: {param.name!r} gives the input and output roles different init or learning-rate "
                f"exponents (input b={inp.b}, c={inp.c_sgd}/{inp.c_adam}/{inp.c_spectral}/{inp.c_relative}; output "
                f"b={out.b}, c={out.c_sgd}/{out.c_adam}/{out.c_spectral}/{out.c_relative}; c for SGD/Adam/spectral/relative), "
                "so one shared tensor cannot follow both; use abcparam.mup(..., form='table8') or untie the readout"
            )
        if (embedding.b, embedding.c_sgd, embedding.c_adam, embedding.width_mult) != (inp.b, inp.c_sgd, inp.c_adam, float(param.width_mult)):
            raise ValueError("param: the embedding was built with another parametrization or width; tie layers built with the same param")
        if alpha is None:
            # the table has the embedding's scale (std ~ sigma); start logits like a readout of
            # std 1/sqrt(fan_in) at base width would
            alpha = 1.0 / (math.sqrt(embedding.embedding_dim / float(param.width_mult)) * embedding.sigma)
        with torch.device("meta"):
            super().__init__(embedding.embedding_dim, embedding.num_embeddings, bias, role="output", param=param, alpha=alpha, fold=False)
        # A folded embedding stores m^-a_in * w: the readout undoes that factor to act on w itself.
        self.weight_multiplier = self.weight_multiplier / embedding.folded_multiplier
        self.weight = embedding.weight
        if self.bias is not None:
            self.bias = nn.Parameter(torch.empty(embedding.num_embeddings, device=embedding.weight.device, dtype=embedding.weight.dtype))
            self.reset_parameters()
        # the shared tensor trains as the embedding does
        self._weight_scales = embedding._weight_scales

    def reset_parameters(self) -> None:
        """Re-draws the bias only: the shared table belongs to the embedding."""
        if self.bias is not None and self.bias.device.type != "meta":
            with torch.no_grad():
                self.bias.uniform_(-self.bias_bound, self.bias_bound)


@runtime_checkable
class AbcLayer(Protocol):
    """What makes a module an abcparam layer, for every part of the package that looks for one.

    ``abc_scales()`` returns ``{tensor name: ParamScales}`` for the tensors the
    module owns: their init std, learning-rate factors per optimizer family
    and epsilon factor (docs/theory.md sections 2 and 10).  abcparam's own
    layers and norms implement it; :func:`abcparam.convert` also marks a norm
    of a model's own class in place with one.  :func:`abcparam.wrap`, the
    coordinate check and :func:`abcparam.to_torch` read nothing else.
    """

    def abc_scales(self) -> Dict[str, "ParamScales"]: ...


def is_abc_layer(mod: Any) -> bool:
    """Whether ``mod`` is an abcparam layer (follows :class:`AbcLayer`)."""
    return callable(getattr(mod, "abc_scales", None))


def abc_modules(model: nn.Module) -> Dict[str, nn.Module]:
    """The abcparam layers of ``model`` by qualified name."""
    return {name: mod for name, mod in model.named_modules() if is_abc_layer(mod)}

