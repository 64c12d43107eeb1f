"""Choosing an OpenMM platform by name.

For alanine dipeptide (22 atoms) the ``Reference`` platform is the fastest one on the CPU-only
machines this project is checked on (about 16,000 Amber steps/s against about 2,300 for ``CPU``;
``scripts/bench_md.py`` measures it), so it is the default.
"""

from __future__ import annotations

import openmm as mm

#: Platform used when none is named: fastest for systems of a few dozen atoms on a CPU.
DEFAULT_PLATFORM = "Reference"


def available_platforms() -> list[str]:
    """Names of the OpenMM platforms this installation can use, in OpenMM's order."""
    return [mm.Platform.getPlatform(i).getName() for i in range(mm.Platform.getNumPlatforms())]


def get_platform(name: str | None = None) -> mm.Platform:
    """The OpenMM platform called ``name`` (``DEFAULT_PLATFORM`` when ``None``).

    Raises ``ValueError`` naming the platforms that are available when ``name`` is not one of them.
    """
    name = DEFAULT_PLATFORM if name is None else name
    available = available_platforms()
    if name not in available:
        raise ValueError(
            f"OpenMM platform {name!r} is not available; available platforms: "
            f"{', '.join(available)}"
        )
    return mm.Platform.getPlatformByName(name)
