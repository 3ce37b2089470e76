"""The optional map parts of the scorer contract: ``head_maps`` (anomaly maps) and ``position_heads`` (heads a
per-position loss reads); checked only for scorers that have them, on map features."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import torch

from ahl_plugins.seeding import seeded
from ahl_plugins.testing.common import ATOL, RTOL, Checker, all_finite, describe, max_diff
from ahl_plugins.training.positions import position_head_names

if TYPE_CHECKING:
    from ahl_plugins.contracts import ScorerModule


def check_maps(
    checker: Checker, scorer: ScorerModule, features: Sequence[torch.Tensor], seed: int, device: torch.device, kind: str
) -> None:
    """The optional map part of the contract: only for scorers that have ``head_maps``, on map features."""
    from ahl_plugins.maps import combined_maps, has_maps

    if kind != "map" or not has_maps(scorer):  # optional, and vector features have no positions
        return
    names = tuple(scorer.head_names)
    batch = int(features[0].shape[0])
    scorer.eval()
    try:
        with torch.no_grad(), checker.guard("scorer.maps", "head_maps(features) in eval mode", kind):
            with seeded(seed, device):
                per_scale = scorer.head_maps(list(features))
            if not isinstance(per_scale, (list, tuple)) or len(per_scale) != len(features):
                raise checker.fail(
                    "scorer.maps",
                    f"head_maps returned {describe(per_scale)}; expected a list with one dict per feature scale "
                    f"({len(features)})",
                    kind,
                )
            for scale, (maps, x) in enumerate(zip(per_scale, features, strict=True)):
                if not isinstance(maps, Mapping) or set(maps) != set(names):
                    got = sorted(maps) if isinstance(maps, Mapping) else describe(maps)
                    raise checker.fail(
                        "scorer.maps", f"scale {scale}: head_maps gave {got}; expected heads {list(names)}", kind
                    )
                grid = (batch, *x.shape[2:])
                for name, value in maps.items():
                    if not isinstance(value, torch.Tensor) or tuple(value.shape) not in (grid, (batch,)):
                        raise checker.fail(
                            "scorer.maps",
                            f"scale {scale}, head {name!r}: {describe(value)}; expected {grid} (one score per "
                            f"position of that scale's {x.shape[2]}×{x.shape[3]} grid) or ({batch},)",
                            kind,
                        )
                    if value.dtype != x.dtype or value.device != x.device or not all_finite(value):
                        raise checker.fail(
                            "scorer.maps",
                            f"scale {scale}, head {name!r}: {value.dtype} on {value.device}"
                            f"{'' if all_finite(value) else ' with non-finite values'}; the features are "
                            f"{x.dtype} on {x.device}",
                            kind,
                        )
            size = (2 * int(features[0].shape[2]), 2 * int(features[0].shape[3]))
            combined = combined_maps(scorer, features, [size] * batch, [0.0] * batch)
            if any(tuple(m.shape) != size or not all_finite(m) for m in combined):
                raise checker.fail(
                    "scorer.maps",
                    f"combine() applied to the upsampled head maps gave {[describe(m) for m in combined[:2]]}; "
                    f"expected finite {size} maps: combine must work position by position (element-wise)",
                    kind,
                )
        checker.ok("scorer.maps", kind)
        with torch.no_grad(), checker.guard("scorer.maps-batch-independent", "head_maps of one sample", kind):
            for i in (0, batch - 1):
                with seeded(seed, device):
                    alone = scorer.head_maps([f[i : i + 1] for f in features])
                for scale, maps in enumerate(alone):
                    for name, value in maps.items():
                        if not torch.allclose(value[0], per_scale[scale][name][i], rtol=RTOL, atol=ATOL):
                            raise checker.fail(
                                "scorer.maps-batch-independent",
                                f"sample {i}'s {name!r} map at scale {scale} differs alone and within the batch "
                                f"(max |diff| {max_diff(value[0], per_scale[scale][name][i]):.3g})",
                                kind,
                            )
        checker.ok("scorer.maps-batch-independent", kind)
    finally:
        scorer.train()


def check_position_heads(
    checker: Checker, scorer: ScorerModule, features: Sequence[torch.Tensor], seed: int, device: torch.device, kind: str
) -> None:
    """The optional per-position heads (``position_heads``): only for scorers that declare them, on map features."""
    names = position_head_names(scorer)
    if kind != "map" or not names:
        return
    batch = int(features[0].shape[0])
    with checker.guard("scorer.position-heads", "forward(features, positions=True)", kind), seeded(seed, device):
        heads = scorer(list(features), positions=True)
    for name in names:
        value = heads.get(name) if isinstance(heads, Mapping) else None
        if not isinstance(value, torch.Tensor) or value.dim() != 3 or value.shape[0] != batch or not all_finite(value):
            raise checker.fail(
                "scorer.position-heads",
                f"position head {name!r} is {describe(value)}; forward(features, positions=True) must add every name "
                f"of position_heads as a finite {batch}×h×w map",
                kind,
            )
    checker.ok("scorer.position-heads", kind)
