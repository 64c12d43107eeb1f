"""Evaluation of a flow energy against reference MD: metrics, Ramachandran analysis, plots."""

from flowff.analysis.evaluate import SplitSpec, evaluate_model, flow_sampler
from flowff.analysis.metrics import (
    force_errors,
    importance_log_weights,
    kish_efficiency,
    kish_efficiency_bootstrap,
    kish_ess,
    log_mean_exp,
    md_frame_metrics,
    pareto_khat,
    pooled_kish_efficiency,
    reverse_kl_estimate,
    sample_metrics,
)
from flowff.analysis.ramachandran import (
    BASIN_DEFINITIONS,
    backbone_torsions,
    basin_populations,
    compare_ramachandran,
    histogram_divergences,
    ramachandran_histogram,
)

__all__ = [
    "BASIN_DEFINITIONS",
    "SplitSpec",
    "backbone_torsions",
    "basin_populations",
    "compare_ramachandran",
    "evaluate_model",
    "flow_sampler",
    "force_errors",
    "histogram_divergences",
    "importance_log_weights",
    "kish_efficiency",
    "kish_efficiency_bootstrap",
    "kish_ess",
    "log_mean_exp",
    "md_frame_metrics",
    "pareto_khat",
    "pooled_kish_efficiency",
    "ramachandran_histogram",
    "reverse_kl_estimate",
    "sample_metrics",
]
