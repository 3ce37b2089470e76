"""What the residual patch scorer keeps beside the normals' patch memory: the patches a search found, as a
feature map. The searches themselves (and their memo), and the memory (greedy coreset, owners, pooled keys),
are the shared ones of :mod:`ahl_plugins.features.patch_memory` (DRA's patch distance head
and the PatchCore-class reference use them too); its map statistics those of
:mod:`ahl_plugins.features.map_statistics`.
"""

from __future__ import annotations

import torch


def gather_patches(memory: torch.Tensor, index: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """``B×C×H×W``: the memory rows ``index`` (``B×H×W``) points at, as a feature map."""
    return memory[index].permute(0, 3, 1, 2).to(dtype)
