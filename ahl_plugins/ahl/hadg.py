"""HADG: heterogeneous anomaly distribution generation.

The normal training features are clustered (k-means); every ordered pair of
distinct clusters (a, b) becomes one task whose support set holds the real
members of cluster a and whose query set holds the real members of cluster b,
so each base model is asked to generalise from one normal mode to another.
Seen anomalies are split once per task (half to support, the rest to query
only, as "virtual unseen" anomalies) and the support and query sets draw
pseudo anomalies from different generators. This fixes defects 1-3 of the
authors' release (``docs/ahl.md``).

A :class:`Task` stores index arrays, not features: into ``data.normals``,
``data.seen`` and ``data.pseudo[generator]``. :class:`SampleLayout` maps them
to rows of ``TrainingData.stacked()``, which is what the learner gathers from.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

import numpy as np
import torch

from ahl_plugins.ahl.options import QueryNormals, SingleAnomaly
from ahl_plugins.contracts import LABEL_NORMAL, LABEL_PSEUDO, LABEL_SEEN
from ahl_plugins.errors import DataError, SmallClusterWarning
from ahl_plugins.features.store import Features
from ahl_plugins.training.data import TrainingData

logger = logging.getLogger(__name__)

KMEANS_N_INIT = 10

TaskKind = Literal["clusters", "random_groups", "random_halves"]


def pooled_features(features: Features) -> np.ndarray:
    """One row per sample for clustering: maps are global-average-pooled per scale, scales concatenated."""
    parts = []
    for tensor in features.scales:
        t = tensor.detach().float()
        if t.dim() == 4:
            t = t.mean(dim=(2, 3))
        elif t.dim() != 2:
            raise DataError(f"cannot cluster features of shape {tuple(tensor.shape)}; expected B×C×H×W or B×D")
        parts.append(t.cpu())
    return torch.cat(parts, dim=1).numpy().astype(np.float64)


@dataclass(frozen=True)
class Clustering:
    """Cluster id of every training normal, after small clusters were merged."""

    labels: np.ndarray = field(repr=False)
    requested: int
    merged: tuple[tuple[int, int, int], ...] = ()  # (k-means cluster, its size, cluster merged into)
    reclustered_outliers: int = 0  # normals left out of a second k-means run, then assigned to the nearest cluster

    @property
    def n_clusters(self) -> int:
        return int(self.labels.max()) + 1 if self.labels.size else 0

    @property
    def sizes(self) -> tuple[int, ...]:
        return tuple(int(v) for v in np.bincount(self.labels, minlength=self.n_clusters))

    def members(self, cluster: int) -> np.ndarray:
        return np.flatnonzero(self.labels == cluster)

    def summary(self) -> dict[str, Any]:
        return {
            "requested": self.requested,
            "n_clusters": self.n_clusters,
            "sizes": list(self.sizes),
            "merged": [{"cluster": a, "size": s, "into": b} for a, s, b in self.merged],
            "reclustered_outliers": self.reclustered_outliers,
        }


def _kmeans(x: np.ndarray, n_clusters: int, seed: int):
    from sklearn.cluster import KMeans

    return KMeans(n_clusters=n_clusters, n_init=KMEANS_N_INIT, random_state=int(seed) % (2**32)).fit(x)


def cluster_normals(normals: Features, n_clusters: int, min_cluster_size: int, seed: int) -> Clustering:
    """k-means (seeded, fixed ``n_init``) on pooled normal features, robust to a few outliers.

    k-means on real features often spends a cluster on a handful of outliers
    (standardised tabular data, odd images), which would leave a task with
    almost no normals. Clusters smaller than ``min_cluster_size`` are first
    treated as outliers: k-means runs once more without them, and they join
    the nearest resulting cluster. Clusters that are still too small are then
    merged into the nearest cluster, which lowers the number of tasks. Both
    steps warn.
    """
    x = pooled_features(normals)
    n = x.shape[0]
    if n < n_clusters:
        raise DataError(
            f"HADG needs at least n_clusters={n_clusters} training normals to cluster, got {n}; "
            "lower AHLOptions.n_clusters or provide more normal samples"
        )
    model = _kmeans(x, n_clusters, seed)
    labels = model.labels_.astype(np.int64)
    sizes = np.bincount(labels, minlength=n_clusters)
    small = np.flatnonzero(sizes < min_cluster_size)
    n_outliers = 0
    if small.size:
        outliers = np.isin(labels, small)
        if (~outliers).sum() >= n_clusters * min_cluster_size:
            n_outliers = int(outliers.sum())
            model = _kmeans(x[~outliers], n_clusters, seed)
            labels = model.predict(x).astype(np.int64)  # outliers join the nearest centroid
            message = (
                f"HADG: k-means put {n_outliers} normal(s) in cluster(s) of sizes "
                f"{[int(sizes[c]) for c in small]} (< min_cluster_size={min_cluster_size}); clustered again "
                "without them and assigned them to the nearest cluster"
            )
            warnings.warn(message, SmallClusterWarning, stacklevel=3)
            logger.warning(message)
    centroids = {c: x[labels == c].mean(axis=0) for c in range(n_clusters) if np.any(labels == c)}
    merged: list[tuple[int, int, int]] = []
    while len(centroids) > 1:
        sizes_now = {c: int(np.sum(labels == c)) for c in centroids}
        smallest = min(sizes_now, key=lambda c: (sizes_now[c], c))
        if sizes_now[smallest] >= min_cluster_size:
            break
        others = [c for c in centroids if c != smallest]
        into = min(others, key=lambda c: (float(np.sum((centroids[c] - centroids[smallest]) ** 2)), c))
        merged.append((smallest, sizes_now[smallest], into))
        labels[labels == smallest] = into
        del centroids[smallest]
        centroids[into] = x[labels == into].mean(axis=0)
    for smallest, size, into in merged:
        message = (
            f"HADG: k-means cluster {smallest} has only {size} normal(s) (< min_cluster_size={min_cluster_size}); "
            f"merged it into cluster {into}"
        )
        warnings.warn(message, SmallClusterWarning, stacklevel=3)
        logger.warning(message)
    # renumber 0..k'-1 in order of k-means id, so ids stay stable under merging
    remap = {old: new for new, old in enumerate(sorted(centroids))}
    labels = np.array([remap[int(c)] for c in labels], dtype=np.int64)
    return Clustering(labels=labels, requested=n_clusters, merged=tuple(merged), reclustered_outliers=n_outliers)


@dataclass(frozen=True, eq=False)
class Task:
    """One base model's data: which samples are in its support and query sets.

    ``*_normals`` index ``data.normals``, ``*_seen`` index ``data.seen``,
    ``*_pseudo`` index ``data.pseudo[*_generator]``. ``pseudo_split`` is true
    when only one generator pool exists, so support and query take disjoint
    halves of that one pool instead of different generators.
    """

    index: int
    kind: TaskKind
    support_cluster: int | None
    query_cluster: int | None
    support_normals: np.ndarray = field(repr=False)
    query_normals: np.ndarray = field(repr=False)
    support_seen: np.ndarray = field(repr=False)
    query_seen: np.ndarray = field(repr=False)
    support_generator: str | None = None
    query_generator: str | None = None
    support_pseudo: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64), repr=False)
    query_pseudo: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64), repr=False)
    pseudo_split: bool = False

    def summary(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "kind": self.kind,
            "support_cluster": self.support_cluster,
            "query_cluster": self.query_cluster,
            "support": {
                "normals": int(self.support_normals.size),
                "seen": int(self.support_seen.size),
                "pseudo": int(self.support_pseudo.size),
                "generator": self.support_generator,
            },
            "query": {
                "normals": int(self.query_normals.size),
                "seen": int(self.query_seen.size),
                "pseudo": int(self.query_pseudo.size),
                "generator": self.query_generator,
            },
            "pseudo_split": self.pseudo_split,
        }


@dataclass(frozen=True)
class SampleLayout:
    """Where normals, seen anomalies and each pseudo pool sit in ``TrainingData.stacked()``."""

    n_normals: int
    n_seen: int
    pseudo_offsets: dict[str, int]
    n_total: int

    @classmethod
    def of(cls, data: TrainingData) -> SampleLayout:
        offset = len(data.normals) + len(data.seen)
        offsets = {}
        for name in sorted(data.pseudo):  # the order of TrainingData.all_pseudo()
            offsets[name] = offset
            offset += len(data.pseudo[name])
        return cls(len(data.normals), len(data.seen), offsets, offset)

    def rows(self, task: Task, part: Literal["support", "query"]) -> tuple[np.ndarray, np.ndarray]:
        """Global rows and labels (0/1/2) of a task's support or query set."""
        normals = getattr(task, f"{part}_normals")
        seen = getattr(task, f"{part}_seen")
        pseudo = getattr(task, f"{part}_pseudo")
        generator = getattr(task, f"{part}_generator")
        rows = [normals, self.n_normals + seen]
        labels = [np.full(normals.size, LABEL_NORMAL), np.full(seen.size, LABEL_SEEN)]
        if generator is not None and pseudo.size:
            rows.append(self.pseudo_offsets[generator] + pseudo)
            labels.append(np.full(pseudo.size, LABEL_PSEUDO))
        return np.concatenate(rows).astype(np.int64), np.concatenate(labels).astype(np.int64)


@dataclass(frozen=True)
class TaskSet:
    """The tasks of one AHL run and the clustering they came from."""

    tasks: tuple[Task, ...]
    clustering: Clustering
    layout: SampleLayout

    def __len__(self) -> int:
        return len(self.tasks)

    def __iter__(self):
        return iter(self.tasks)

    def __getitem__(self, i: int) -> Task:
        return self.tasks[i]

    def summary(self) -> dict[str, Any]:
        return {"clustering": self.clustering.summary(), "tasks": [t.summary() for t in self.tasks]}


def _split_seen(m: int, rng: np.random.Generator, single: SingleAnomaly = "both") -> tuple[np.ndarray, np.ndarray]:
    """Once per task: a random half (rounded down) to support, the rest to query only.

    M = 1: ``single="both"`` puts the one anomaly in support and query (the paper); otherwise in the query
    set only, which is what the half-rounded-down rule gives (no support anomaly, the one a virtual unseen).
    """
    if m == 0:
        empty = np.zeros(0, np.int64)
        return empty, empty
    if m == 1:
        one = np.zeros(1, np.int64)
        if single != "both":
            return np.zeros(0, np.int64), one
        return one, one.copy()
    perm = rng.permutation(m).astype(np.int64)
    n_support = m // 2
    return np.sort(perm[:n_support]), np.sort(perm[n_support:])


def _draw_pseudo(
    pools: dict[str, int], rng: np.random.Generator
) -> tuple[str | None, np.ndarray, str | None, np.ndarray, bool]:
    """Different generators for support and query; one pool only: disjoint halves of it."""
    names = sorted(name for name, size in pools.items() if size > 0)
    empty = np.zeros(0, np.int64)
    if not names:
        return None, empty, None, empty, False
    if len(names) == 1:
        name = names[0]
        size = pools[name]
        if size == 1:
            one = np.zeros(1, np.int64)
            return name, one, name, one.copy(), True
        perm = rng.permutation(size).astype(np.int64)
        half = size // 2
        return name, np.sort(perm[:half]), name, np.sort(perm[half:]), True
    support = names[int(rng.integers(len(names)))]
    others = [n for n in names if n != support]
    query = others[int(rng.integers(len(others)))]
    return support, np.arange(pools[support], dtype=np.int64), query, np.arange(pools[query], dtype=np.int64), False


def _query_normals(groups: list[np.ndarray], a: int, b: int, mode: QueryNormals) -> np.ndarray:
    if mode == "cluster":
        return groups[b]
    chosen = [g for i, g in enumerate(groups) if mode == "all" or i != a]
    return np.sort(np.concatenate(chosen))


def build_tasks(
    data: TrainingData,
    *,
    n_clusters: int = 3,
    min_cluster_size: int = 5,
    random_halves_task: bool = False,
    random_groups: bool = False,
    query_normals: QueryNormals = "cluster",
    single_anomaly: SingleAnomaly = "both",
    seed: int = 0,
) -> TaskSet:
    """The HADG tasks: ordered pairs of distinct clusters (plus the optional random-halves task).

    ``random_groups`` is the "no HADG" ablation: the same number of groups
    with the clusters' sizes, but normals assigned to them at random.
    ``query_normals`` widens the query normals of pair (a, b) from cluster b
    (the paper) to every normal outside a (``other_clusters``) or to every
    normal (``all``). T stays k(k-1), so only the query normals change; the
    random-halves task keeps its halves. ``single_anomaly``: where the one
    seen anomaly goes when M = 1 (:func:`_split_seen`); ``query_normal_support``
    also keeps the pseudo anomalies out of the support sets at M = 1.
    """
    if single_anomaly not in get_args(SingleAnomaly):
        raise DataError(f"single_anomaly must be one of {list(get_args(SingleAnomaly))}, got {single_anomaly!r}")
    if query_normals not in get_args(QueryNormals):
        raise DataError(f"query_normals must be one of {list(get_args(QueryNormals))}, got {query_normals!r}")
    rng = np.random.default_rng([int(seed), 0x4841_4447])  # "HADG"
    clustering = cluster_normals(data.normals, n_clusters, min_cluster_size, seed)
    groups = [clustering.members(c) for c in range(clustering.n_clusters)]
    kind: TaskKind = "clusters"
    if random_groups:
        perm = rng.permutation(len(data.normals)).astype(np.int64)
        cuts = np.cumsum([g.size for g in groups])[:-1]
        groups = [np.sort(part) for part in np.split(perm, cuts)]
        kind = "random_groups"
    pools = {name: len(features) for name, features in data.pseudo.items()}
    m = len(data.seen)
    pairs: list[tuple[TaskKind, int | None, int | None, np.ndarray, np.ndarray]] = []
    if len(groups) >= 2:
        for a in range(len(groups)):
            for b in range(len(groups)):
                if a != b:
                    pairs.append((kind, a, b, groups[a], _query_normals(groups, a, b, query_normals)))
    add_halves = random_halves_task
    if not pairs:
        message = (
            f"HADG: after merging small clusters only {len(groups)} cluster remains "
            f"(sizes {list(clustering.sizes)}); falling back to the single random-halves task"
        )
        warnings.warn(message, SmallClusterWarning, stacklevel=2)
        logger.warning(message)
        add_halves = True
    if add_halves:
        n = len(data.normals)
        if n < 2:
            raise DataError(f"the random-halves task needs at least 2 training normals, got {n}")
        perm = rng.permutation(n).astype(np.int64)
        pairs.append(("random_halves", None, None, np.sort(perm[: n // 2]), np.sort(perm[n // 2 :])))
    tasks = []
    for index, (task_kind, support_cluster, query_cluster, support_members, query_members) in enumerate(pairs):
        support_seen, query_seen = _split_seen(m, rng, single_anomaly)
        sg, sp, qg, qp, split = _draw_pseudo(pools, rng)
        if m == 1 and single_anomaly == "query_normal_support":  # support sets of normals only
            sg, sp = None, np.zeros(0, np.int64)
        tasks.append(
            Task(
                index=index,
                kind=task_kind,
                support_cluster=support_cluster,
                query_cluster=query_cluster if query_normals == "cluster" else None,
                support_normals=np.asarray(support_members, np.int64),
                query_normals=np.asarray(query_members, np.int64),
                support_seen=support_seen,
                query_seen=query_seen,
                support_generator=sg,
                query_generator=qg,
                support_pseudo=sp,
                query_pseudo=qp,
                pseudo_split=split,
            )
        )
    logger.info(
        "HADG: %d cluster(s) of sizes %s -> %d task(s)%s",
        clustering.n_clusters,
        list(clustering.sizes),
        len(tasks),
        " (random groups: no clustering)" if random_groups else "",
    )
    return TaskSet(tuple(tasks), clustering, SampleLayout.of(data))
