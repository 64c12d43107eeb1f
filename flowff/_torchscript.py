"""TorchScript helpers: silence exactly torch's ``torch.jit`` deprecation warning where we call it.

torch (since 2.11) warns on every ``torch.jit`` call. flowff still ships TorchScript because
openmm-torch's ``TorchForce`` loads it; every other warning stays visible.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator

#: Matches torch's message, e.g. "`torch.jit.script` is deprecated. Please switch to ...".
JIT_DEPRECATION_MESSAGE = r"`torch\.jit\.[\w.]+` is deprecated"


@contextlib.contextmanager
def quiet_jit() -> Iterator[None]:
    """Context manager that hides only torch's ``torch.jit`` deprecation warnings."""
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", message=JIT_DEPRECATION_MESSAGE, category=DeprecationWarning
        )
        yield
