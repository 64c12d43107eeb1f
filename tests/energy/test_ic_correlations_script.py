"""scripts/ic_correlations.py: the cost of ignoring residual correlations, on Gaussians."""

from __future__ import annotations

import numpy as np


def test_independence_cost_sees_correlation_only_when_present(load_script) -> None:
    script = load_script("ic_correlations")
    rng = np.random.default_rng(0)
    n = 20000
    conditioner = rng.standard_normal((n, 1))
    features = np.concatenate([conditioner, np.ones((n, 1))], axis=1)
    # explained by the conditioner only: residuals independent
    independent = 2.0 * conditioner + rng.standard_normal((n, 2))
    corr, rel = script.independence_cost(independent, features)
    assert corr < 0.05 and rel < 0.05
    # residuals correlated at rho = 0.6: the independent model's force error is large
    cov = np.array([[1.0, 0.6], [0.6, 1.0]])
    correlated = conditioner + rng.multivariate_normal(np.zeros(2), cov, size=n)
    corr, rel = script.independence_cost(correlated, features)
    assert abs(corr - 0.6) < 0.03
    # exact: sqrt(tr(D C D) / tr(P C P)) with P = C^-1, D = P - I, which is rho = 0.6 here
    assert abs(rel - 0.6) < 0.03
