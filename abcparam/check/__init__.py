"""What the width check (:func:`abcparam.coord_check`) and the depth check (:func:`abcparam.depth_check`) share.

- :mod:`~abcparam.check.engine`: building a model at one size, giving it its
  (wrapped) optimizers, observing it and training it;
- :mod:`~abcparam.check.decision`: the fitted slopes (:class:`Fit`) and the one
  decision over them (:class:`Decision`) that both checks' reports derive
  pass / fail / inconclusive from (docs/theory.md section 8).
"""
