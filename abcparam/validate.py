"""Argument checks shared by the whole package: one wording per kind of value (pure Python: no torch).

Every check names the argument and what it allows, and raises before the
caller changes anything.  Two families, kept apart because users' code
already catches them: the layers' and parametrizations' constructors raise a
``TypeError`` for a value of the wrong type and a ``ValueError`` for a value
out of range (:func:`positive_int`, :func:`real`); the checks, limits and
learners raise a ``ValueError`` with the allowed range (:func:`number`,
:func:`count`, :func:`int_list`, :func:`choice`).
"""

from __future__ import annotations

import math
import numbers
from typing import Any, Collection, Iterable, List, Optional

__all__ = ["choice", "count", "int_list", "number", "positive_int", "real"]


def _is_real(value: Any) -> bool:
    return not isinstance(value, bool) and isinstance(value, numbers.Real) and math.isfinite(float(value))


def positive_int(value: Any, name: str) -> int:
    """An int > 0: ``TypeError`` for a non-int (bool included), ``ValueError`` for one <= 0."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name}: expected a positive int, got {type(value).__name__} {value!r}")
    if value <= 0:
        raise ValueError(f"{name}: must be > 0, got {value}")
    return int(value)


def real(value: Any, name: str, *, zero_ok: bool) -> float:
    """A finite float > 0 (>= 0 when ``zero_ok``): ``TypeError`` for a non-number or a non-finite one, else ``ValueError``."""
    if not _is_real(value):
        raise TypeError(f"{name}: expected a finite number, got {value!r}")
    if float(value) < 0 or (not zero_ok and float(value) == 0):
        raise ValueError(f"{name}: must be {'>= 0' if zero_ok else '> 0'}, got {value}")
    return float(value)


def number(value: Any, name: str, *, zero_ok: bool = False, none_ok: bool = False, what: str = "") -> Optional[float]:
    """A finite float > 0 (>= 0 when ``zero_ok``; None passes through when ``none_ok``), else a ``ValueError``.

    ``what`` says what the number is, in the message.

    >>> number(0.5, "lr")
    0.5
    >>> number(0, "clip", none_ok=True)
    Traceback (most recent call last):
    ValueError: clip: a finite number > 0 or None, got 0
    """
    if value is None and none_ok:
        return None
    if not _is_real(value) or float(value) < 0 or (not zero_ok and float(value) == 0):
        allowed = f"a finite number {'>= 0' if zero_ok else '> 0'}{' or None' if none_ok else ''}"
        raise ValueError(f"{name}: {allowed}{f' ({what})' if what else ''}, got {value!r}")
    return float(value)


def count(value: Any, name: str, minimum: int = 1) -> int:
    """An int >= ``minimum`` (bool refused), else a ``ValueError``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"{name}: an int >= {minimum}, got {value!r}")
    return int(value)


def int_list(values: Iterable[Any], name: str) -> List[int]:
    """A non-empty list of ints (bools refused), else a ``ValueError``."""
    out = list(values)
    if not out or not all(isinstance(s, numbers.Integral) and not isinstance(s, bool) for s in out):
        raise ValueError(f"{name}: a non-empty list of ints, got {out!r}")
    return [int(s) for s in out]


def choice(value: Any, name: str, allowed: Collection[Any]) -> Any:
    """One of ``allowed``, else a ``ValueError`` listing them."""
    if value not in allowed:
        raise ValueError(f"{name}: got {value!r}; allowed: {', '.join(map(str, allowed))}")
    return value
