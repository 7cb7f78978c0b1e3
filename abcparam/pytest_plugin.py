"""pytest plugin (entry point ``pytest11``): the ``abc_coord_check`` fixture.

Installed with abcparam; importing it costs nothing (torch is imported when the
fixture is used).  In a test::

    def test_regime(abc_coord_check):
        abc_coord_check(build, batch=(x, y), optimizer=torch.optim.Adam, lr=1e-2,
                        expect="feature_learning")
"""

import pytest


@pytest.fixture
def abc_coord_check():
    """A function running the coordinate check with CI defaults; it fails the test on disagreement.

    ``expect=REGIME`` asserts that regime (theory and measurement); without it
    the measurements must agree with the theory.  Returns the report.
    """
    from . import testing

    def check(build, *, batch, optimizer, lr, expect=None, **kw):
        if expect is None:
            return testing.assert_matches_theory(build, batch=batch, optimizer=optimizer, lr=lr, **kw)
        return testing.assert_regime(build, expect, batch=batch, optimizer=optimizer, lr=lr, **kw)

    return check
