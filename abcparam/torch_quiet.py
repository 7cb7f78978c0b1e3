"""Import torch once, quietly: a CPU build without numpy warns "Failed to initialize NumPy" on import.

abcparam never needs numpy, so that warning (torch's, printed on every run of a
fresh install) says nothing about abcparam's work; every torch-based module of
abcparam imports torch through here first.  A user's own earlier ``import
torch`` is unaffected.
"""

import warnings

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message="Failed to initialize NumPy")
    import torch  # noqa: F401
