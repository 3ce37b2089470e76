"""The fitted part of the map-statistics image score: per-scale thresholds, the statistics' standardisation on
the training normals, a logistic regression on them, and its logit's calibration (:mod:`ahl_plugins.map_scoring`
attaches it to a model's scorer; :mod:`ahl_plugins.evaluation.patchcore_stats` to the PatchCore-class maps).

Everything fitted is a float64 buffer, so it is saved and loaded with the weights of the module that holds it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
import torch
from torch import nn

from ahl_plugins.errors import DataError
from ahl_plugins.features.map_statistics import (
    STATISTICS,
    THRESHOLD_QUANTILES,
    map_statistics,
    normal_thresholds,
    robust_center_spread,
)


class MapStatisticsClassifier(nn.Module):
    """The fitted part: per-scale thresholds, the statistics' standardisation, the logistic weights and the
    logit's calibration, all buffers (saved in the scorer's weights file); shaped by the number of scales."""

    thresholds: torch.Tensor
    stat_center: torch.Tensor
    stat_scale: torch.Tensor
    weight: torch.Tensor
    bias: torch.Tensor
    logit_center: torch.Tensor
    logit_scale: torch.Tensor

    def __init__(self, n_scales: int) -> None:
        super().__init__()
        width = len(STATISTICS) * n_scales
        self.n_scales = n_scales
        self.register_buffer("thresholds", torch.zeros(n_scales, len(THRESHOLD_QUANTILES), dtype=torch.float64))
        self.register_buffer("stat_center", torch.zeros(width, dtype=torch.float64))
        self.register_buffer("stat_scale", torch.ones(width, dtype=torch.float64))
        self.register_buffer("weight", torch.zeros(width, dtype=torch.float64))
        self.register_buffer("bias", torch.zeros((), dtype=torch.float64))
        self.register_buffer("logit_center", torch.zeros((), dtype=torch.float64))
        self.register_buffer("logit_scale", torch.ones((), dtype=torch.float64))

    def statistics(self, maps: Sequence[torch.Tensor]) -> torch.Tensor:
        """``B×(7·scales)`` standardised statistics of per-scale maps (float64)."""
        if len(maps) != self.n_scales:
            raise DataError(f"map statistics were fitted on {self.n_scales} scale(s), got maps of {len(maps)}")
        columns = [map_statistics(m.double(), self.thresholds[s].to(m.device)) for s, m in enumerate(maps)]
        return (torch.cat(columns, dim=1) - self.stat_center) / self.stat_scale

    def logits(self, maps: Sequence[torch.Tensor]) -> torch.Tensor:
        return self.statistics(maps) @ self.weight + self.bias

    def learned(self, logits: torch.Tensor) -> torch.Tensor:
        """The logit in spreads of the training normals (median 0, spread 1)."""
        return (logits.double() - self.logit_center) / self.logit_scale

    @torch.no_grad()
    def fit(
        self,
        normal_maps: Sequence[torch.Tensor],
        anomaly_maps: Sequence[torch.Tensor],
        seed: int,
        regularization: float = 1.0,
        weights: Literal["free", "non_negative"] = "free",
    ) -> MapStatisticsClassifier:
        """Fit on per-scale maps of the training normals (``N×h×w`` each) and the labelled anomalies."""
        n, m = int(normal_maps[0].shape[0]), int(anomaly_maps[0].shape[0])
        if n < 2 or m < 1:
            raise DataError(
                f"map_statistics fits a classifier on the training normals against the labelled anomalies; it needs "
                f"at least 2 normals and 1 labelled anomaly (y == 1), got {n} and {m}. Label anomalies, or leave "
                "map_statistics='off'"
            )
        for s, maps in enumerate(normal_maps):
            self.thresholds[s] = normal_thresholds(maps).to(self.thresholds)
        self.stat_center.zero_()
        self.stat_scale.fill_(1.0)
        raw_normal = self.statistics([t.cpu() for t in normal_maps])
        raw_anomaly = self.statistics([t.cpu() for t in anomaly_maps])
        for j in range(raw_normal.shape[1]):
            center, spread = robust_center_spread(raw_normal[:, j])
            self.stat_center[j] = center
            self.stat_scale[j] = spread
        x_normal = (raw_normal - self.stat_center) / self.stat_scale
        x_anomaly = (raw_anomaly - self.stat_center) / self.stat_scale
        x = torch.cat([x_normal, x_anomaly]).numpy()
        y = np.r_[np.zeros(n), np.ones(m)]
        fit = logistic_regression if weights == "free" else non_negative_logistic_regression
        coef, intercept = fit(x, y, regularization, int(seed))
        self.weight.copy_(torch.from_numpy(coef))
        self.bias.fill_(intercept)
        center, spread = robust_center_spread(x_normal @ self.weight + self.bias)
        self.logit_center.fill_(center)
        self.logit_scale.fill_(spread)
        return self

    def coefficients(self) -> dict[str, float]:
        """The fitted weights by statistic name (``scale<s>:<statistic>``), for ``fit_info_``."""
        names = [f"scale{s}:{name}" for s in range(self.n_scales) for name in STATISTICS]
        return {name: round(float(w), 6) for name, w in zip(names, self.weight.tolist(), strict=True)}


def logistic_regression(x: np.ndarray, y: np.ndarray, regularization: float, seed: int) -> tuple[np.ndarray, float]:
    """scikit-learn's L2 logistic regression with balanced class weights (lbfgs): ``(weights, intercept)``."""
    from sklearn.linear_model import LogisticRegression

    model = LogisticRegression(C=regularization, class_weight="balanced", max_iter=2000, random_state=seed)
    model.fit(x, y)
    return model.coef_[0].astype(np.float64), float(model.intercept_[0])


def non_negative_logistic_regression(
    x: np.ndarray, y: np.ndarray, regularization: float, seed: int
) -> tuple[np.ndarray, float]:
    """The same objective as :func:`logistic_regression` (balanced weights, L2 on the weights, free intercept),
    minimised by L-BFGS-B with every weight bounded below by 0. Deterministic (``seed`` is unused: no
    randomness)."""
    from scipy.optimize import minimize

    sample_weight = np.where(y == 1, len(y) / (2.0 * y.sum()), len(y) / (2.0 * (len(y) - y.sum())))
    sign = 2 * y - 1

    def loss(params: np.ndarray) -> tuple[float, np.ndarray]:
        w, b = params[:-1], params[-1]
        margin = sign * (x @ w + b)
        value = float((sample_weight * np.logaddexp(0, -margin)).sum() + 0.5 / regularization * (w @ w))
        slope = -sample_weight * sign / (1 + np.exp(margin))
        return value, np.r_[x.T @ slope + w / regularization, slope.sum()]

    bounds = [(0.0, None)] * x.shape[1] + [(None, None)]
    result = minimize(loss, np.zeros(x.shape[1] + 1), jac=True, method="L-BFGS-B", bounds=bounds)
    return result.x[:-1].astype(np.float64), float(result.x[-1])
