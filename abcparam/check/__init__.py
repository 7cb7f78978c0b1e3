"""The width check (:func:`abcparam.coord_check`), the depth check (:func:`abcparam.depth_check`) and the
maximal-update check, on one engine (docs/theory.md sections 8 and 12).

- :mod:`~abcparam.check.engine`: building a model at one size, giving it its (wrapped) optimizers, observing it and
  training it;
- :mod:`~abcparam.check.measure`, :mod:`~abcparam.check.prediction`, :mod:`~abcparam.check.report`,
  :mod:`~abcparam.check.width`: the width check's measurement, its predictions (every quantity declared in
  ``QUANTITIES``), its report and its entry point;
- :mod:`~abcparam.check.depth`, :mod:`~abcparam.check.maximal`: the depth check and the maximal-update check;
- :mod:`~abcparam.check.stats`, :mod:`~abcparam.check.decision`, :mod:`~abcparam.check.escalation`: the slopes'
  statistics, the one pass / fail / inconclusive decision every report derives from, and the passes added after an
  inconclusive one.
"""
