"""OpenMM side of flowff: potentials (flow and classical), the MD runner and energy drift.

Submodules are imported explicitly (``from flowff.openmm.md import run_md``) so that importing
this package never requires openmm-torch or a trained model.
"""
