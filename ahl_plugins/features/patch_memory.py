"""Patch memories of normal feature maps: greedy coreset and nearest-patch distance.

Shared by the PatchCore-class reference (``ahl_plugins.evaluation.patchcore``) and by scorers that want a
patch-level "how far from the nearest normal patch" signal (DRA's ``distance_form="patch"``; any third-party
scorer may import this module, it sits in the features layer). Plain tensor code: no state, no globals.
"""

from __future__ import annotations

import torch


def as_patches(maps: torch.Tensor) -> torch.Tensor:
    """``B×C×H×W`` -> ``(B·H·W)×C``, image-major (patch ``j`` of image ``i`` at row ``i·H·W + j``)."""
    return maps.detach().float().permute(0, 2, 3, 1).reshape(-1, maps.shape[1])


def kcenter_greedy(patches: torch.Tensor, n_keep: int, projection_dim: int, generator: torch.Generator) -> torch.Tensor:
    """Indices of ``n_keep`` rows chosen greedily: each next row is the one farthest from those kept.

    Distances are taken on a seeded Gaussian random projection to ``projection_dim`` dimensions (Johnson-
    Lindenstrauss: distances kept up to a small factor, at a fraction of the cost); the first row is seeded.
    """
    n = int(patches.shape[0])
    if n_keep >= n:
        return torch.arange(n)
    x = patches.float()
    if x.shape[1] > projection_dim:
        proj = torch.randn(x.shape[1], projection_dim, generator=generator) / projection_dim**0.5
        x = x @ proj
    norms = (x * x).sum(dim=1)
    chosen = torch.empty(n_keep, dtype=torch.long)
    first = int(torch.randint(n, (1,), generator=generator))
    chosen[0] = first
    # squared distances by the expansion |x|² - 2 x·c + |c|²: one matrix-vector product per step, no N×d temporary
    min_dist = norms - 2 * (x @ x[first]) + norms[first]
    for i in range(1, n_keep):
        nxt = int(torch.argmax(min_dist))
        chosen[i] = nxt
        torch.minimum(min_dist, norms - 2 * (x @ x[nxt]) + norms[nxt], out=min_dist)
    return chosen


def nearest_distance(
    queries: torch.Tensor,
    memory: torch.Tensor,
    chunk: int = 2048,
    query_owner: torch.Tensor | None = None,
    memory_owner: torch.Tensor | None = None,
) -> torch.Tensor:
    """Exact Euclidean distance of each query row to its nearest memory row (``torch.cdist`` in blocks).

    With owners given, memory rows of the query's own image are skipped (leave-image-out calibration).
    """
    out = []
    for start in range(0, len(queries), chunk):
        dist = torch.cdist(queries[start : start + chunk], memory)
        if query_owner is not None and memory_owner is not None:
            same = query_owner[start : start + chunk, None] == memory_owner[None, :]
            dist = dist.masked_fill(same, float("inf"))
        out.append(dist.min(dim=1).values)
    return torch.cat(out) if out else torch.zeros(0)


def nearest_patch_distance(
    maps: torch.Tensor, memory: torch.Tensor, owner: torch.Tensor, keys: torch.Tensor, chunk: int = 16
) -> torch.Tensor:
    """``B×H×W``: each position's distance to its nearest ``memory`` patch, the sample's own patches skipped.

    ``owner``: the memory image (row of ``keys``) each patch comes from; ``keys``: those images' pooled
    vectors. A sample whose pooled vector is (numerically) a key's is that training image, so its own patches
    are left out, and a training normal is scored as a test sample would be. Matrix products only (no
    ``cdist``, no data-dependent branches): safe under ``torch.func.vmap``; the self-match test in float64 so
    it does not depend on the machine's BLAS.
    """
    b, c, h, w = maps.shape
    pooled = maps.detach().mean(dim=(2, 3)).double()
    k = keys.double()
    key_norms = (k**2).sum(-1)
    gap = (pooled**2).sum(-1, keepdim=True) - 2 * pooled @ k.T + key_norms[None, :]
    own = gap <= 1e-7 * key_norms.mean()  # B×N
    own_patch = own[:, owner]  # B×M
    q = maps.detach().float().permute(0, 2, 3, 1).reshape(b, h * w, c)
    m = memory.float()
    m_norms = (m**2).sum(-1)
    out = []
    for start in range(0, b, chunk):  # bounded memory: chunk × H·W × M distances at a time
        qq = q[start : start + chunk]
        d2 = (qq**2).sum(-1, keepdim=True) - 2 * qq @ m.T + m_norms[None, None, :]
        d2 = d2.masked_fill(own_patch[start : start + chunk, None, :], float("inf"))
        out.append(d2.min(dim=-1).values)
    return torch.cat(out).clamp_min(0).sqrt().reshape(b, h, w).to(maps.dtype)
