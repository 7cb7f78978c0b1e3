"""Infer the abc-parametrization of unmodified model code, then classify it (docs/theory.md section 15).

Every exponent of an abc-parametrization is observable: build the model at two
or more widths and compare.  For each trained tensor :func:`inspect` finds

- its role, from which of its dimensions grow with the width (the weight
  layout of the module that uses it says which dimension is fan-in);
- b, from the initial RMS across widths (several draws for small tensors);
- a, from the module that uses it: its output on a probe input against the
  same computation done with the stored tensor (``F.linear``, a table lookup,
  a normalisation);
- c, from the learning rate the optimizer gives it at each width (torch
  Muon's own shape factor included), with the optimizer's family, and the
  width exponent of Adam's epsilon;
- the attention scale, from attention modules that expose it (``scaling`` or
  ``scale`` with ``head_dim``, as HF's and abcparam's do; torch's
  ``nn.MultiheadAttention``).

Each exponent is the least-squares slope of log-quantities against log-width,
snapped to the nearest fraction with denominator <= 4 and shown with its
residual.  The inferred exponents are then classified by the exact calculus
(per role, as the coordinate check predicts non-chain models), and with
``batch=`` the coordinate check measures the same builds against that
prediction.  What no probe can see (a multiplier written inline in a model's
``forward``, outside any module) is the coordinate check's to catch.
"""

from .infer import inspect
from .records import Estimate, Inspection, TensorUse

__all__ = ["inspect", "Inspection", "TensorUse", "Estimate"]
