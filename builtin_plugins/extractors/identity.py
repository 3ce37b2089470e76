"""Vectors as they are, z-scored with statistics fitted on training rows only.

Standardising matters for the vector heads and for the feature-space pseudo
anomalies (shifts are measured in feature-wise standard deviations). Test
rows never touch the statistics: ``fit`` sees only what the caller passes,
which must be training rows.
"""

from __future__ import annotations

import hashlib

import torch

from ahl_plugins.contracts import FeatureExtractor, FeatureSpec
from ahl_plugins.errors import DataError, NotFittedError
from builtin_plugins.extractors import IdentityOptions

_SHOW = 10


def check_finite(rows: torch.Tensor, what: str) -> None:
    """Raise a :class:`DataError` naming the rows and columns that hold NaN or ±inf."""
    bad = ~torch.isfinite(rows)
    if bool(bad.any()):
        bad_rows = torch.nonzero(bad.any(dim=1), as_tuple=True)[0].tolist()
        bad_cols = torch.nonzero(bad.any(dim=0), as_tuple=True)[0].tolist()

        def show(ids: list[int]) -> str:
            more = f" (and {len(ids) - _SHOW} more)" if len(ids) > _SHOW else ""
            return ", ".join(map(str, ids[:_SHOW])) + more

        raise DataError(
            f"{what} hold {int(bad.sum())} NaN or infinite value(s) in {len(bad_rows)} row(s) "
            f"[{show(bad_rows)}] and column(s) [{show(bad_cols)}] (0-based); impute or drop them before fitting"
        )


def _as_rows(rows, what: str) -> torch.Tensor:
    try:
        rows = torch.as_tensor(rows)
    except (TypeError, ValueError, RuntimeError) as exc:
        raise DataError(f"{what} must be a numeric array: {exc}") from None
    if rows.dim() != 2:
        raise DataError(f"{what} must be a 2-D array (rows × features), got shape {tuple(rows.shape)}")
    if rows.is_complex():
        raise DataError(f"{what} must be real-valued, got dtype {rows.dtype}")
    rows = rows.to(torch.float32)
    check_finite(rows, what)
    return rows


class IdentityExtractor(FeatureExtractor):
    name = "identity"
    input_kind = "vector"
    image_size = None

    def __init__(self, options: IdentityOptions | None = None) -> None:
        self.options = options or IdentityOptions()
        self.mean: torch.Tensor | None = None
        self.std: torch.Tensor | None = None
        self.dim: int | None = None

    def fit(self, train_inputs) -> None:
        rows = _as_rows(train_inputs, "training rows")
        if rows.shape[0] < 1:
            raise DataError("identity extractor: fit() needs at least one training row")
        self.dim = int(rows.shape[1])
        if self.options.standardize:
            mean = rows.mean(dim=0).to(torch.float64)
            std = rows.to(torch.float64).std(dim=0, unbiased=False)
            # Constant columns are only centred: dividing by ~0 would blow up any test deviation.
            std = torch.where(std > self.options.min_std, std, torch.ones_like(std))
            self.mean, self.std = mean.float(), std.float()

    @property
    def fitted(self) -> bool:
        return self.dim is not None

    @property
    def spec(self) -> FeatureSpec:
        if self.dim is None:
            raise NotFittedError("the identity extractor learns its width from fit(training rows); call fit first")
        return FeatureSpec("vector", (self.dim,))

    def _stats_digest(self) -> str:
        digest = hashlib.sha256()
        for tensor in (self.mean, self.std):
            if tensor is not None:
                digest.update(tensor.contiguous().numpy().tobytes())
        return digest.hexdigest()[:20]

    def fingerprint(self) -> str:
        if not self.fitted:
            raise NotFittedError(
                "the identity extractor's fingerprint depends on its fitted statistics; call fit first"
            )
        norm = f"zscore(min_std={self.options.min_std}):{self._stats_digest()}" if self.options.standardize else "raw"
        return f"identity|dim={self.dim}|norm={norm}|v1"

    def extract(self, batch) -> list[torch.Tensor]:
        device = batch.device if isinstance(batch, torch.Tensor) else torch.device("cpu")
        rows = _as_rows(batch, "input rows")
        if not self.fitted:
            raise NotFittedError("call fit(training rows) on the identity extractor before extracting features")
        if rows.shape[1] != self.dim:
            raise DataError(f"rows have {rows.shape[1]} features but the extractor was fitted on {self.dim}")
        if self.options.standardize:
            assert self.mean is not None and self.std is not None  # fit sets both when standardising
            rows = (rows - self.mean.to(rows.device)) / self.std.to(rows.device)
        return [rows.to(device)]

    def fitted_state(self) -> dict[str, torch.Tensor]:
        if not self.fitted:
            return {}
        state = {"dim": torch.tensor(self.dim)}
        if self.mean is not None and self.std is not None:  # set together by fit
            state.update(mean=self.mean.clone(), std=self.std.clone())
        return state

    def load_fitted_state(self, state: dict[str, torch.Tensor]) -> None:
        if "dim" not in state:
            return
        self.dim = int(state["dim"])
        if self.options.standardize:
            if "mean" not in state or "std" not in state:
                raise DataError("saved identity extractor state lacks its standardisation statistics (mean/std)")
            self.mean, self.std = state["mean"].float().clone(), state["std"].float().clone()
