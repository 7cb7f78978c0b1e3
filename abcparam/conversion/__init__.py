"""Model conversion: plain torch layers to abcparam layers (:func:`convert`) and back (:func:`to_torch`).

In the style of torchao's ``quantize_``: :func:`convert` walks the model and
offers each module to a table of handlers, one per module kind
(:mod:`~abcparam.conversion.handlers`: ``nn.Linear``, ``nn.Embedding`` and HF's
``Conv1D``; ``nn.MultiheadAttention``; torch's norms; norms of the model's own
class).  A layer's role comes from an explicit ``{name pattern: role}`` map, or
from which of its dimensions are width-sized.  Then come the changes that
concern the model as a whole (:mod:`~abcparam.conversion.passes`: tied
readouts, attention scales, torch's fused path, residual blocks).  Every
change is planned and built before any is applied, so a refusal leaves the
model as it was.  The rule for existing weights is explicit: ``init="reinit"``
(default) draws every converted layer from the parametrization's own
initialisation, which is the point of converting a model you are about to
train, and the report says how many layers' weights were replaced;
``init="keep"`` carries the current weights over as the layers' effective
weights, so the converted model computes the same function at this width (for
a pretrained model).  Norms keep their gains (a gain's init does not change
with width).  A readout whose weight *is* a converted embedding's table (a
tie) becomes a :class:`abcparam.TiedReadout`, or the conversion is refused
with the reason.  Every other module that holds tensors and is left alone is
listed in the report, with the reason.  :mod:`~abcparam.conversion.export`
goes back: plain torch modules with the multipliers folded in.

>>> import torch, abcparam
>>> net = torch.nn.Sequential(torch.nn.Linear(10, 256), torch.nn.ReLU(), torch.nn.Linear(256, 256),
...                           torch.nn.ReLU(), torch.nn.Linear(256, 3))
>>> report = abcparam.convert(net, abcparam.mup(256, 64), widths=[256])
>>> [(c.name, c.role) for c in report.converted]
[('0', 'input'), ('2', 'hidden'), ('4', 'output')]
"""

from .export import effective_state_dict, from_torch, to_torch
from .report import ConversionReport, Converted
from .walk import convert

__all__ = ["convert", "ConversionReport", "Converted", "to_torch", "from_torch", "effective_state_dict"]
