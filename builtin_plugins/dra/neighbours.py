"""The DRA scorer's searches of the training normals: whole-map nearest neighbours and the patch memory.

Both run inside the scorer's forward (under ``functional_call`` / ``vmap`` in the AHL learner), so both are
plain tensor code with no data-dependent branches. The patch distance reads no parameter, so ``fixed_heads``
lets a caller compute it once per sample (AHL does) instead of once per forward.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch

from ahl_plugins.features.patch_memory import (
    SearchMemo,
    as_patches,
    kcenter_greedy,
)
from builtin_plugins.heads import topk_mean

if TYPE_CHECKING:
    from builtin_plugins.dra import DRAOptions

DISTANCE = "distance"


def nearest_normal_mean(
    x: torch.Tensor, bank: torch.Tensor, k: int, excluded: torch.Tensor | None = None
) -> torch.Tensor:
    """Mean of each sample's ``k`` nearest bank normals (``B×...``), the sample itself excluded.

    ``excluded``: ``(R,)``, 1 for bank rows not to use (a task's restriction, see
    :meth:`DRAScorer.task_buffers`); empty or None: every row.

    Maps are compared by their pooled vectors and averaged as whole maps. A
    bank row at (numerically) zero distance is the sample itself during
    training, or an exact duplicate of it; it is skipped either way, so a
    training normal and a test sample are treated alike. Pure tensor code
    (no ``.item()``, no data-dependent branches): safe under ``vmap``.
    """
    # float64: in float32 the expansion below cancels to errors of ~1e-3 on 512-d embeddings, above the
    # self-match threshold, so one training normal in five kept itself among its neighbours (and which one
    # depended on the machine's BLAS); no gradient flows through the distances, only through the chosen rows
    keys = (bank.mean(dim=(2, 3)) if bank.dim() == 4 else bank).detach().double()
    query = (x.mean(dim=(2, 3)) if x.dim() == 4 else x).detach().double()
    key_norms = (keys**2).sum(-1)
    distances = (query**2).sum(-1, keepdim=True) - 2 * query @ keys.T + key_norms[None, :]
    skip = distances <= 1e-7 * key_norms.mean()
    if excluded is not None and excluded.numel():
        skip = skip | (excluded[None, :] > 0)
    distances = distances.masked_fill(skip, float("inf"))
    k = min(int(k), max(1, keys.shape[0] - 1))
    nearest = torch.topk(distances, k, dim=-1, largest=False).indices  # B×k
    return bank[nearest].mean(dim=1).to(x.dtype)


class PatchDistance:
    """The patch form of DRA's distance head (``distance_form="patch"``), mixed into ``DRAScorer``.

    Buffers per scale (registered empty by the scorer, filled by :meth:`_prepare_patches`): the coreset memory,
    the training image each patch comes from, and those images' pooled vectors. Searches on plain tensors go
    through ``search_memo``, so a sample is searched once per memory however often a fit scores it.
    """

    search_memo: SearchMemo

    if TYPE_CHECKING:  # what the scorer this mixes into provides
        options: DRAOptions
        patch_distance: bool

        def reference(self, scale: int) -> torch.Tensor: ...

        @property
        def prepared(self) -> bool: ...

    @staticmethod
    def _patch_names(scale: int) -> tuple[str, str, str]:
        return f"patch_memory_{scale}", f"patch_owner_{scale}", f"patch_keys_{scale}"

    def _patch_map(self, scale: int, x: torch.Tensor) -> torch.Tensor:
        """``B×H×W``: each position's distance to the nearest normal patch (the patch form of the distance head)."""
        memory, owner, keys = (getattr(self, name) for name in self._patch_names(scale))
        return self.search_memo.nearest(x, memory, owner.long(), keys)[0]

    def _prepare_patches(self, scale: int, x: torch.Tensor, generator: torch.Generator) -> None:
        """The patch memory of one scale: a greedy coreset of every training normal's patches."""
        patches = as_patches(x.detach().cpu())
        owner = torch.arange(x.shape[0]).repeat_interleave(x.shape[2] * x.shape[3])
        keep = max(1, int(round(self.options.patch_memory_fraction * len(patches))))
        seed = int(torch.randint(2**31 - 1, (1,), generator=generator, device=generator.device))
        index = kcenter_greedy(patches, keep, 64, torch.Generator().manual_seed(seed))
        memory, own, keys = self._patch_names(scale)
        device = self.reference(scale).device
        setattr(self, memory, patches[index].to(device=device, dtype=x.dtype).contiguous())
        setattr(self, own, owner[index].to(device))
        setattr(self, keys, x.detach().mean(dim=(2, 3)).to(device).clone())

    @torch.no_grad()
    def fixed_heads(self, features: Sequence[torch.Tensor]) -> dict[str, torch.Tensor]:
        """The heads that read neither a parameter nor a per-task buffer, per sample: today the patch distance head.

        A caller that scores the same samples many times with different parameters (AHL's SGE scores every
        task's base model on every training sample each epoch) computes these once and passes them to
        :meth:`forward` as ``fixed``: the same values, one nearest-patch search per sample instead of one per
        task and epoch. Empty when every head has parameters (the pooled distance head reads the task's bank).
        """
        if not (self.patch_distance and self.prepared):
            return {}
        n = int(features[0].shape[0])
        parts = []
        for start in range(0, n, 256):
            batch = [f[start : start + 256] for f in features]
            parts.append(torch.stack([self._patch_score(s, x) for s, x in enumerate(batch)]).mean(dim=0))
        return {DISTANCE: torch.cat(parts) if parts else features[0].new_zeros(0)}

    def _patch_score(self, scale: int, x: torch.Tensor) -> torch.Tensor:
        """The patch distance head of one scale: pooled distances to the nearest normal patches."""
        distances = self._patch_map(scale, x).flatten(1)
        if self.options.distance_pooling == "max":
            return distances.amax(dim=1)
        return topk_mean(distances, self.options.topk_ratio)
