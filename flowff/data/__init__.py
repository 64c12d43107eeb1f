"""Reference MD data: generation with OpenMM, loading, and time-block splits."""

from flowff.data.reference import (
    ReferenceData,
    ReferenceMDConfig,
    generate_reference_data,
    load_reference_data,
    split_by_time_blocks,
)

__all__ = [
    "ReferenceData",
    "ReferenceMDConfig",
    "generate_reference_data",
    "load_reference_data",
    "split_by_time_blocks",
]
