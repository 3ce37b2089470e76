"""Patch memories of normal feature maps: greedy coreset and nearest-patch search.

Shared by the PatchCore-class reference (``ahl_plugins.evaluation.patchcore``) and by scorers that want a
patch-level "how far from the nearest normal patch" signal (DRA's ``distance_form="patch"``, the residual patch
model; any third-party scorer may import this module, it sits in the features layer). Two forms of the search:
:func:`nearest_patches` has no data-dependent branches (for ``torch.func`` transforms);
:func:`nearest_patches_blocked` is the same search on plain tensors at about half the cost
(:func:`plain_tensor` tells which applies), and a scorer may keep its searches in a :class:`SearchMemo`. Plain
tensor code otherwise; the only module state is :data:`RECENT_CORESETS`, which returns a coreset already chosen
for exactly the same inputs.
"""

from __future__ import annotations

import hashlib
import weakref
from collections import OrderedDict
from collections.abc import Callable, Sequence

import torch


def as_patches(maps: torch.Tensor) -> torch.Tensor:
    """``B×C×H×W`` -> ``(B·H·W)×C``, image-major (patch ``j`` of image ``i`` at row ``i·H·W + j``)."""
    return maps.detach().float().permute(0, 2, 3, 1).reshape(-1, maps.shape[1])


class CoresetMemo:
    """The last few greedy coresets, by their exact inputs (the patches' bytes, the sizes and the generator's
    state), with the generator state each left behind.

    A compare grid fits a model and its AHL-wrapped twin on the same split and seed, so both choose the same
    coreset of the same training normals' patches, the costliest step of preparing a patch memory (a matrix-vector
    product over every patch per kept patch). A hit returns the same indices and leaves the generator exactly as
    the computation would: nothing a caller sees changes, only the time.
    """

    def __init__(self, max_entries: int = 4) -> None:
        self.max_entries = max_entries
        self.entries: OrderedDict[bytes, tuple[torch.Tensor, torch.Tensor]] = OrderedDict()

    @staticmethod
    def key(patches: torch.Tensor, n_keep: int, projection_dim: int, generator: torch.Generator) -> bytes:
        digest = hashlib.blake2b(digest_size=20)
        digest.update(f"{tuple(patches.shape)}|{patches.dtype}|{n_keep}|{projection_dim}".encode())
        digest.update(generator.get_state().numpy().tobytes())
        digest.update(patches.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().data)
        return digest.digest()

    def get(self, key: bytes, generator: torch.Generator) -> torch.Tensor | None:
        found = self.entries.get(key)
        if found is None:
            return None
        self.entries.move_to_end(key)
        chosen, state = found
        generator.set_state(state.clone())
        return chosen.clone()

    def put(self, key: bytes, chosen: torch.Tensor, generator: torch.Generator) -> None:
        self.entries[key] = (chosen.clone(), generator.get_state())
        while len(self.entries) > self.max_entries:
            self.entries.popitem(last=False)

    def clear(self) -> None:
        self.entries.clear()


#: coresets chosen in this process, reused for identical inputs (:class:`CoresetMemo`)
RECENT_CORESETS = CoresetMemo()


def coreset_size(n_patches: int, per_image: int, fraction: float) -> int:
    """How many of ``n_patches`` a coreset of ``fraction`` keeps: at least one patch more than an image holds, so an
    image scored with its own patches left out always finds another image's patch (a tiny map's 10% memory could
    otherwise be a single image's patches: infinite distances), and never more than there are."""
    return min(n_patches, max(per_image + 1, round(fraction * n_patches)))


def kcenter_greedy(patches: torch.Tensor, n_keep: int, projection_dim: int, generator: torch.Generator) -> torch.Tensor:
    """Indices of ``n_keep`` rows chosen greedily: each next row is the one farthest from those kept.

    Distances are taken on a seeded Gaussian random projection to ``projection_dim`` dimensions (Johnson-
    Lindenstrauss: distances kept up to a small factor, at a fraction of the cost); the first row is seeded.
    The same inputs chosen again in this process come from :data:`RECENT_CORESETS`.
    """
    if generator.device.type != "cpu":  # the memo replays CPU generator states only
        return greedy_coreset(patches, n_keep, projection_dim, generator)
    key = CoresetMemo.key(patches, n_keep, projection_dim, generator)
    found = RECENT_CORESETS.get(key, generator)
    if found is not None:
        return found
    chosen = greedy_coreset(patches, n_keep, projection_dim, generator)
    RECENT_CORESETS.put(key, chosen, generator)
    return chosen


def greedy_coreset(patches: torch.Tensor, n_keep: int, projection_dim: int, generator: torch.Generator) -> torch.Tensor:
    """:func:`kcenter_greedy` computed, never remembered."""
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


def plain_tensor(x: torch.Tensor) -> bool:
    """Whether ``x`` is a plain tensor with storage, not one wrapped by a ``torch.func`` transform (``vmap``,
    ``grad``), where data-dependent shapes and in-place writes are not allowed."""
    try:
        x.data_ptr()
    except (RuntimeError, TypeError):
        return False
    return True


def own_images(pooled: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
    """``B×N``: which training images (rows of ``keys``, their pooled vectors) each sample is: a sample whose
    pooled vector is (numerically, in float64 so it does not depend on the machine's BLAS) a key is that image."""
    p = pooled.detach().double()
    k = keys.double()
    key_norms = (k**2).sum(-1)
    gap = (p**2).sum(-1, keepdim=True) - 2 * p @ k.T + key_norms[None, :]
    return gap <= 1e-7 * key_norms.mean()


def nearest_distances(
    queries: torch.Tensor, reference: torch.Tensor, k: int, exclude: torch.Tensor | None = None
) -> torch.Tensor:
    """``B×k``: each query row's Euclidean distances (float64) to its ``k`` nearest ``reference`` rows, nearest
    first; ``exclude`` (``B×N``, bool) skips rows, such as a training image's own (:func:`own_images`). The k-NN
    reference (``ahl_plugins.evaluation.knn``) and the residual patch model's pooled floor share it."""
    distance = torch.cdist(queries.double(), reference.double())
    if exclude is not None:
        distance = distance.masked_fill(exclude, float("inf"))
    return distance.topk(k, dim=1, largest=False).values


def own_patches(maps: torch.Tensor, owner: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
    """``B×M``: the memory patches of each sample's own training image (none for a new image).

    ``owner``: the memory image (row of ``keys``) each patch comes from; ``keys``: those images' pooled vectors
    (:func:`own_images`).
    """
    return own_images(maps.detach().mean(dim=(2, 3)), keys)[:, owner]


def nearest_patches(
    maps: torch.Tensor, memory: torch.Tensor, owner: torch.Tensor, keys: torch.Tensor, chunk: int = 16
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(distance B×H×W, index B×H×W)``: each position's nearest ``memory`` patch (its row) and its distance,
    the sample's own patches skipped (:func:`own_patches`), so a training normal is scored as a new one would be.

    Matrix products only (no ``cdist``, no data-dependent branches): safe under ``torch.func.vmap``.
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
    """:func:`nearest_patches` for plain tensors, at about half its cost: the same indices, the same distances
    up to float rounding.

    One sample at a time (its H·W × M distances stay in cache), the product and the squared norms in one
    ``addmm``, and the sample's own patches skipped by setting their few columns (about one image's share of
    the memory) instead of masking the whole block. Data-dependent shapes: not for ``torch.func`` transforms.
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


def nearest_patch_distance(
    maps: torch.Tensor, memory: torch.Tensor, owner: torch.Tensor, keys: torch.Tensor
) -> torch.Tensor:
    """``B×H×W``: each position's distance to its nearest ``memory`` patch, the sample's own patches skipped;
    the blocked search on plain tensors, the branch-free one under ``torch.func`` transforms."""
    if all(plain_tensor(t) for t in (maps, memory, owner, keys)):
        return nearest_patches_blocked(maps, memory, owner, keys)[0]
    return nearest_patches(maps, memory, owner, keys)[0]


Search = Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


class SearchMemo:
    """Nearest-patch searches already made, by the content of the memory searched and the sample's exact bytes.

    A fit searches the same samples many times: training draws the same normals and labelled anomalies again and
    again, calibration scores every training normal, and AHL's guard trains several copies of one prepared scorer
    (held-out fits, then the chosen one again on all the data). Copies of a scorer (``copy.deepcopy``) share one
    memo, and an entry is keyed by a digest of the memory tensors it searched (each hashed once per tensor object
    and in-place version), so a copy, a reloaded scorer or a ``functional_call`` with other buffers never reads
    another memory's searches. A hit returns exactly what the search returned. Plain tensors only
    (:meth:`usable`): under ``torch.func`` transforms the search runs as is.
    """

    def __init__(self, max_entries: int = 200_000) -> None:
        self.max_entries = max_entries
        self.entries: dict[tuple[bytes, bytes], tuple[torch.Tensor, torch.Tensor]] = {}
        self.digests: dict[int, tuple[weakref.ref[torch.Tensor], int, bytes]] = {}

    def __deepcopy__(self, memo: dict[int, object]) -> SearchMemo:
        return self  # shared by the copies of its scorer: see the class docstring

    def clear(self) -> None:
        self.entries.clear()
        self.digests.clear()

    @staticmethod
    def usable(*tensors: torch.Tensor) -> bool:
        return all(plain_tensor(t) for t in tensors)

    def memory_key(self, memory: Sequence[torch.Tensor]) -> bytes:
        """A digest of the tensors a search reads (memory, owners, keys), each hashed once while unchanged."""
        out = hashlib.blake2b(digest_size=20)
        for tensor in memory:
            version = None if tensor.is_inference() else tensor._version  # inference tensors keep no version
            known = self.digests.get(id(tensor))
            if known is None or known[0]() is not tensor or version is None or known[1] != version:
                if len(self.digests) > 64:
                    self.digests.clear()
                flat = tensor.detach().cpu().contiguous().view(-1)
                digest = hashlib.blake2b(flat.view(torch.uint8).numpy().data, digest_size=20)
                digest.update(f"{tuple(tensor.shape)}|{tensor.dtype}".encode())
                known = (weakref.ref(tensor), -1 if version is None else version, digest.digest())
                self.digests[id(tensor)] = known
            out.update(known[2])
        return out.digest()

    def nearest(
        self, x: torch.Tensor, memory: torch.Tensor, owner: torch.Tensor, keys: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """:func:`nearest_patches` of ``x``: blocked and remembered on plain tensors, branch-free under
        ``torch.func`` transforms."""
        if not self.usable(x, memory, owner, keys):
            return nearest_patches(x, memory, owner, keys)
        return self.search((memory, owner, keys), x, lambda rows: nearest_patches_blocked(rows, memory, owner, keys))

    def search(self, memory: Sequence[torch.Tensor], x: torch.Tensor, run: Search) -> tuple[torch.Tensor, torch.Tensor]:
        """``run(x)``'s ``(distance, index)``, computed only for the rows not searched before in this ``memory``."""
        where = self.memory_key(memory)
        rows = x.detach().cpu().contiguous().numpy()
        keys = [(where, hashlib.blake2b(row.tobytes(), digest_size=16).digest()) for row in rows]
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
