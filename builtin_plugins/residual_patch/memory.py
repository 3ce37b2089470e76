"""What the residual patch scorer keeps beside the normals' patch memory: the patches a search found, as a
feature map, and a memo of searches already made. The searches themselves, and the memory (greedy coreset,
owners, pooled keys), are the shared ones of :mod:`ahl_plugins.features.patch_memory` (DRA's patch distance head
and the PatchCore-class reference use them too); its map statistics those of
:mod:`ahl_plugins.features.map_statistics`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable

import torch


def gather_patches(memory: torch.Tensor, index: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """``B×C×H×W``: the memory rows ``index`` (``B×H×W``) points at, as a feature map."""
    return memory[index].permute(0, 3, 1, 2).to(dtype)


Search = Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


class SearchMemo:
    """The nearest-patch search of samples already searched against the current memory, by their exact bytes.

    Training draws the same normals and labelled anomalies again and again (balanced batches with replacement),
    and ``prepare`` has already searched every training normal, so most training searches are repeats. The memo
    changes no output (a hit returns what the search would, exactly); its owner clears it whenever the memory
    changes. Plain tensors only: under ``torch.func`` transforms (batched or gradient-tracking features) the
    search runs as is.
    """

    def __init__(self, max_entries: int = 200_000) -> None:
        self.max_entries = max_entries
        self.entries: dict[tuple[int, bytes], tuple[torch.Tensor, torch.Tensor]] = {}

    def clear(self) -> None:
        self.entries.clear()

    @staticmethod
    def usable(x: torch.Tensor) -> bool:
        try:
            x.detach().cpu().numpy()
        except (RuntimeError, TypeError):  # a functorch-wrapped tensor has no storage to read
            return False
        return True

    def search(self, scale: int, x: torch.Tensor, run: Search) -> tuple[torch.Tensor, torch.Tensor]:
        """``run(x)``'s ``(distance, index)``, computed only for the rows not seen before."""
        rows = x.detach().cpu().contiguous().numpy()
        keys = [(scale, hashlib.blake2b(row.tobytes(), digest_size=16).digest()) for row in rows]
        missing = [i for i, key in enumerate(keys) if key not in self.entries]
        if missing:
            distance, index = run(x[missing])
            if len(self.entries) + len(missing) > self.max_entries:
                self.entries.clear()
            for j, i in enumerate(missing):
                self.entries[keys[i]] = (distance[j].detach(), index[j])
        found = [self.entries[key] for key in keys]
        if len(self.entries) > self.max_entries:  # the rows of this call were just added; keep them for the return
            self.entries.clear()
        return torch.stack([d for d, _ in found]).to(x.device), torch.stack([i for _, i in found]).to(x.device)
