"""Per-position labels through the trainers: built from the masks in ``TrainingData``, kept aligned with their
samples through balanced batches and HADG's support/query sets, passed only to a loss that declares them."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import pytest
import torch
import torch.nn.functional as F
from ahl_testkit import train_ahl
from torch import nn

from ahl_plugins.ahl.options import AHLOptions
from ahl_plugins.contracts import LABEL_NORMAL, LABEL_PSEUDO, LABEL_SEEN, FeatureSpec
from ahl_plugins.features.store import Features
from ahl_plugins.training.base import train_base
from ahl_plugins.training.data import TrainingData
from ahl_plugins.training.options import TrainOptions
from ahl_plugins.training.positions import mask_targets, position_targets

SIDE = 4
FAST_BASE = TrainOptions(epochs=2, batches_per_epoch=3, batch_size=12)
FAST_AHL = {"epochs": 2, "history": 2, "batch_size": 12, "outer_steps_per_epoch": 2, "n_clusters": 2}


class RowScorer(nn.Module):
    """A 1×1 conv score map; ``row`` passes on the sample's row id, written into its features at (0, 0, 0)."""

    head_names = ("score", "row")
    position_heads = ("score_map",)

    def __init__(self, spec: FeatureSpec) -> None:
        super().__init__()
        self.conv = nn.Conv2d(spec.channels[0], 1, kernel_size=1)

    def forward(self, features: Sequence[torch.Tensor], positions: bool = False) -> dict[str, torch.Tensor]:
        x = features[0]
        score_map = self.conv(x[:, 1:].sum(1, keepdim=True).expand_as(x)).squeeze(1)
        heads = {"score": score_map.flatten(1).mean(1), "row": x[:, 0, 0, 0]}
        return {**heads, "score_map": score_map} if positions else heads

    def combine(self, heads: Mapping[str, torch.Tensor]) -> torch.Tensor:
        return heads["score"]

    def prepare(self, normal_features, generator) -> None:
        """Nothing to prepare."""


def logistic(heads: Mapping[str, torch.Tensor], labels: torch.Tensor) -> torch.Tensor:
    y = (labels != LABEL_NORMAL).to(heads["score"].dtype)
    return F.binary_cross_entropy_with_logits(heads["score"], y)


class Recorder:
    """A declaring loss that checks every batch against the targets its samples should carry."""

    uses_position_labels = True

    def __init__(self, expected: torch.Tensor, labels: torch.Tensor) -> None:
        self.expected, self.labels = expected, labels
        self.calls = self.rows = 0
        self.mismatches: list[str] = []

    def __call__(self, heads, labels, *, positions):
        self.calls += 1
        rows = heads["row"].detach().round().long()
        self.rows += len(rows)
        got, want = positions["score_map"], self.expected[rows]
        if got.shape != want.shape or not torch.equal(got.nan_to_num(-1.0), want.nan_to_num(-1.0)):
            self.mismatches.append(f"targets of rows {rows.tolist()}")
        if not torch.equal(labels.cpu(), self.labels[rows]):
            self.mismatches.append(f"labels of rows {rows.tolist()}")
        known = ~torch.isnan(got)
        bce = F.binary_cross_entropy_with_logits(heads["score_map"], got.nan_to_num(0.0), reduction="none")
        return logistic(heads, labels) + torch.where(known, bce, 0.0).sum() / known.sum().clamp(min=1)


class ImageLabelsOnly:
    """Today's contract: exactly ``loss(heads, labels)``; records what it was given."""

    def __init__(self) -> None:
        self.keys: set[str] = set()

    def __call__(self, heads, labels):
        self.keys |= set(heads)
        return logistic(heads, labels)


def one_cell(index: int) -> torch.Tensor:
    mask = torch.zeros(SIDE, SIDE)
    mask[(index // SIDE) % SIDE, index % SIDE] = 1.0
    return mask


def data_with_masks() -> tuple[TrainingData, torch.Tensor, torch.Tensor]:
    """20 normals in two blobs, 4 seen anomalies (the last without a mask), pseudo pools ``a`` (with masks) and
    ``b`` (without); every sample's row of ``stacked()`` is written into its features."""
    g = torch.Generator().manual_seed(0)
    sizes = {"normals": 20, "seen": 4, "a": 6, "b": 5}
    total = sum(sizes.values())
    x = torch.randn(total, 3, SIDE, SIDE, generator=g) * 0.3
    x[10:20, 1:] += 2.0  # two normal modes for k-means
    x[20:, 1:] += 1.0
    x[:, 0, 0, 0] = torch.arange(total, dtype=torch.float32)
    f = Features((x,))
    seen_masks = torch.stack([one_cell(i) for i in range(3)] + [torch.full((SIDE, SIDE), math.nan)])
    pseudo_masks = {"a": torch.stack([one_cell(5 + i) for i in range(6)])}
    data = TrainingData(
        f[range(20)], f[range(20, 24)], {"a": f[range(24, 30)], "b": f[range(30, 35)]}, (), seen_masks, pseudo_masks
    )
    expected = torch.cat(
        [torch.zeros(20, SIDE, SIDE), seen_masks, pseudo_masks["a"], torch.full((5, SIDE, SIDE), math.nan)]
    )
    _, labels = data.stacked()
    return data, expected, labels


def test_targets_follow_stacked_order_with_zeros_for_normals_and_nan_for_unknown():
    data, expected, labels = data_with_masks()
    targets = position_targets(data, {"score_map": (SIDE, SIDE), "coarse": (2, 2)})
    assert torch.equal(targets["score_map"].nan_to_num(-1.0), expected.nan_to_num(-1.0))
    coarse = targets["coarse"]  # max pooling: the one defect cell makes its 2×2 quarter a defect
    assert coarse.shape == (len(labels), 2, 2)
    assert torch.equal(coarse[20], torch.tensor([[1.0, 0.0], [0.0, 0.0]]))  # seen 0: cell (0, 0)
    assert torch.equal(coarse[22], torch.tensor([[0.0, 1.0], [0.0, 0.0]]))  # seen 2: cell (0, 2), quarter (0, 1)
    assert torch.isnan(coarse[23]).all() and torch.isnan(coarse[30:]).all()
    assert (coarse[:20] == 0).all()


def test_a_coarse_grid_keeps_a_one_pixel_defect():
    mask = torch.zeros(1, 8, 8)
    mask[0, 5, 6] = 1.0
    pooled = mask_targets(mask, 1, (2, 2))
    assert torch.equal(pooled[0], torch.tensor([[0.0, 0.0], [0.0, 1.0]]))


def test_training_data_refuses_masks_that_do_not_match_its_samples():
    data, _, _ = data_with_masks()
    with pytest.raises(ValueError, match="seen_masks"):
        TrainingData(data.normals, data.seen, data.pseudo, (), torch.zeros(2, SIDE, SIDE))
    with pytest.raises(ValueError, match="pseudo_masks"):
        TrainingData(data.normals, data.seen, data.pseudo, (), None, {"a": torch.zeros(2, SIDE, SIDE)})


def test_the_base_loop_passes_each_sample_its_own_targets():
    data, expected, labels = data_with_masks()
    loss = Recorder(expected, labels)
    train_base(RowScorer(data.normals.spec), loss, data, FAST_BASE, seed=0)
    assert loss.calls == 6 and loss.rows == 6 * 12
    assert not loss.mismatches


@pytest.mark.parametrize("ablation", ["none", "ensemble"])
def test_masks_survive_hadg_support_and_query_sets_aligned_with_their_samples(ablation):
    data, expected, labels = data_with_masks()
    loss = Recorder(expected, labels)
    options = AHLOptions(**FAST_AHL, ablation=ablation)
    _, history = train_ahl(RowScorer(data.normals.spec), loss, data, options, seed=0)
    assert history["n_tasks"] >= 2
    assert loss.calls > 0 and not loss.mismatches


def test_a_loss_without_the_declaration_gets_exactly_the_old_call_and_the_same_model():
    data, _, _ = data_with_masks()
    bare = TrainingData(data.normals, data.seen, data.pseudo)
    trained = []
    for d in (data, bare):
        loss = ImageLabelsOnly()
        torch.manual_seed(0)
        scorer = RowScorer(d.normals.spec)
        train_base(scorer, loss, d, FAST_BASE, seed=0)
        assert loss.keys == {"score", "row"}  # no position maps asked for
        trained.append(scorer.state_dict())
    assert all(torch.equal(trained[0][k], trained[1][k]) for k in trained[0])


def test_labels_of_every_kind_reach_the_declaring_loss():
    data, expected, labels = data_with_masks()
    assert set(labels.tolist()) == {LABEL_NORMAL, LABEL_SEEN, LABEL_PSEUDO}
    loss = Recorder(expected, labels)
    train_base(
        RowScorer(data.normals.spec), loss, data, TrainOptions(epochs=1, batches_per_epoch=1, batch_size=30), seed=1
    )
    assert loss.rows == 30 and not loss.mismatches


def test_the_guards_holdout_keeps_each_pseudo_anomaly_with_its_mask():
    from ahl_plugins.ahl.guard import holdout_split

    g = torch.Generator().manual_seed(1)
    x = torch.randn(60, 3, SIDE, SIDE, generator=g)
    x[:, 0, 0, 0] = torch.arange(60, dtype=torch.float32)
    f = Features((x,))
    masks = torch.stack([one_cell(i) for i in range(30)])  # pseudo sample i (row 30 + i): cell i % 16
    data = TrainingData(f[range(30)], f[range(0)], {"a": f[range(30, 60)]}, (), None, {"a": masks})
    split = holdout_split(data, 0.4, seed=0)
    assert not isinstance(split, str)
    kept = split[0]
    assert len(kept.pseudo["a"]) == 18 and kept.pseudo_masks["a"].shape == (18, SIDE, SIDE)
    ids = kept.pseudo["a"].scales[0][:, 0, 0, 0].round().long() - 30
    assert torch.equal(kept.pseudo_masks["a"], masks[ids])
