"""What the residual patch scorer reads from the normals' patch memory: nearest patches. (Its map statistics
are the shared ones of :mod:`ahl_plugins.features.map_statistics`.)

:func:`nearest_patches` is pure tensor code with no data-dependent branches, so the scorer's forward runs under
the AHL learner's ``functional_call`` / ``vmap``; on plain tensors the scorer runs :func:`nearest_patches_blocked`,
the same search at about half the cost (``docs/benchmarks/residual_patch_cost.md``). The memory itself (greedy coreset, owners, pooled keys) is built with the same
public code as DRA's patch distance head and the PatchCore-class reference (``ahl_plugins.features.patch_memory``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable

import torch


def nearest_patches(
    maps: torch.Tensor, memory: torch.Tensor, owner: torch.Tensor, keys: torch.Tensor, chunk: int = 16
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(distance B×H×W, index B×H×W)``: each position's nearest memory patch (its row) and its distance.

    As :func:`ahl_plugins.features.patch_memory.nearest_patch_distance`, a sample whose pooled vector is a
    training image's key has that image's own patches left out, so a training normal is scored as a new one
    would be (leave-one-out). The search reads no gradient; the nearest patches are plain memory rows.
    """
    b, c, h, w = maps.shape
    own_patch = own_patches(maps, owner, keys)
    q = maps.detach().float().permute(0, 2, 3, 1).reshape(b, h * w, c)
    m = memory.float()
    m_norms = (m**2).sum(-1)
    distances, indices = [], []
    for start in range(0, b, chunk):  # bounded memory: chunk × H·W × M distances at a time
        qq = q[start : start + chunk]
        d2 = (qq**2).sum(-1, keepdim=True) - 2 * qq @ m.T + m_norms[None, None, :]
        d2 = d2.masked_fill(own_patch[start : start + chunk, None, :], float("inf"))
        best = d2.min(dim=-1)
        distances.append(best.values)
        indices.append(best.indices)
    distance = torch.cat(distances).clamp_min(0).sqrt().reshape(b, h, w).to(maps.dtype)
    return distance, torch.cat(indices).reshape(b, h, w)


def nearest_patches_blocked(
    maps: torch.Tensor, memory: torch.Tensor, owner: torch.Tensor, keys: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`nearest_patches` for plain tensors, at about half its cost: the same distances and indices.

    One sample at a time (its H·W × M distances stay in cache), the product and the squared norms in one
    ``addmm`` summed in the same order, and the sample's own patches skipped by setting their few columns
    (about one image's share of the memory) instead of masking the whole block. Data-dependent shapes: not
    for ``torch.func`` transforms, where :func:`nearest_patches` runs.
    """
    b, c, h, w = maps.shape
    own_patch = own_patches(maps, owner, keys)
    q = maps.detach().float().permute(0, 2, 3, 1).reshape(b, h * w, c)
    m = memory.float()
    m_norms = (m**2).sum(-1)
    m_t = m.T.contiguous()
    q_norms = (q**2).sum(-1, keepdim=True)
    distance = torch.empty(b, h * w, dtype=torch.float32, device=maps.device)
    index = torch.empty(b, h * w, dtype=torch.long, device=maps.device)
    for i in range(b):
        d2 = torch.addmm(q_norms[i], q[i], m_t, alpha=-2)  # |q|² - 2 q·m, as nearest_patches rounds it
        d2 += m_norms
        columns = own_patch[i].nonzero().flatten()
        if len(columns):
            d2.index_fill_(1, columns, float("inf"))
        torch.min(d2, dim=1, out=(distance[i], index[i]))
    return distance.clamp_min(0).sqrt().reshape(b, h, w).to(maps.dtype), index.reshape(b, h, w)


def own_patches(maps: torch.Tensor, owner: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
    """``B×M``: the memory patches of each sample's own training image (none for a new image).

    A sample whose pooled vector is (numerically, in float64 so it does not depend on the machine's BLAS) a
    training image's key is that image."""
    pooled = maps.detach().mean(dim=(2, 3)).double()
    k = keys.double()
    key_norms = (k**2).sum(-1)
    gap = (pooled**2).sum(-1, keepdim=True) - 2 * pooled @ k.T + key_norms[None, :]
    return (gap <= 1e-7 * key_norms.mean())[:, owner]


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
