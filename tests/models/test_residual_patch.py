"""The residual patch model: registered like DRA, fits, scores, draws maps, is wrapped by AHL, keeps its floor."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ahl_plugins.contracts import FeatureSpec
from ahl_plugins.errors import DataError
from ahl_plugins.evaluation.knn import knn_scores, pooled
from ahl_plugins.evaluation.patchcore import PatchCoreOptions, PatchMemory
from ahl_plugins.features.map_statistics import map_statistics
from ahl_plugins.features.patch_memory import nearest_patches, nearest_patches_blocked
from ahl_plugins.features.store import Features
from ahl_plugins.maps import iter_maps
from ahl_plugins.plugins import get_manager
from ahl_plugins.training.base import train_base
from ahl_plugins.training.data import TrainingData
from ahl_plugins.training.options import TrainOptions
from ahl_plugins.training.scoring import score_features
from builtin_plugins.residual_patch import ResidualPatchOptions, build_loss, build_scorer

SPEC = FeatureSpec("map", (6, 6))
FAST = TrainOptions(epochs=3, batches_per_epoch=4, batch_size=12, lr=1e-2)


def make(n: int, seed: int, bump: int | None = None) -> Features:
    """Two scales (6×6 and 3×3 positions); an anomaly is a bright 2×2 patch in channel ``bump``."""
    g = torch.Generator().manual_seed(seed)
    base = torch.randn(n, 6, 6, 6, generator=g) * 0.5
    if bump is not None:
        rows = torch.randint(0, 5, (n,), generator=g)
        for i, r in enumerate(rows.tolist()):
            base[i, bump, r : r + 2, r : r + 2] += 3.0
    return Features((base, torch.nn.functional.avg_pool2d(base, 2)))


def data(n_normals: int = 40) -> TrainingData:
    return TrainingData(make(n_normals, 0), make(4, 1, bump=2), {"patch": make(8, 2, bump=4)})


def fitted(**options) -> torch.nn.Module:
    torch.manual_seed(0)
    scorer = build_scorer(SPEC, ResidualPatchOptions(**{"patch_memory_fraction": 0.5, **options}))
    train_base(scorer, build_loss(), data(), FAST, seed=0)
    return scorer


def test_model_scorer_and_loss_are_registered_through_the_hooks():
    manager = get_manager()
    spec = manager.model("residual_patch")
    assert (spec.scorer, spec.loss) == ("residual_patch", "residual_patch")
    assert manager.get("scorers", "residual_patch").plugin == "builtin_plugins.residual_patch"
    with pytest.raises(DataError, match="needs feature maps"):
        build_scorer(FeatureSpec("vector", (4,)))


def test_fits_and_ranks_unseen_defects_above_normals():
    scorer = fitted()
    test = Features.cat([make(20, 5), make(10, 6, bump=0)])  # channel 0: a defect type it never saw
    scores = score_features(scorer, test)
    labels = np.r_[np.zeros(20), np.ones(10)]
    from ahl_plugins.evaluation.metrics import auc_roc

    assert auc_roc(labels, scores) > 0.9


def test_floor_is_the_patchcore_class_score_under_the_same_seed_and_the_score_never_goes_below_it():
    scorer = fitted(floor_calibration_normals=16)  # a coreset of half the patches, drawn from the seed's generator
    test = Features.cat([make(10, 7), make(5, 8, bump=3)])
    heads = scorer(test.as_list())
    # the same coresets and calibration images as the reference seeded alike: its score, not a second draw of it
    options = PatchCoreOptions(coreset_fraction=0.5, seed=0, calibration_images=16)
    reference = PatchMemory(options).fit(data().normals.as_list())
    for s in range(2):
        assert torch.equal(getattr(scorer, f"memory_{s}"), reference.memories[s])
    assert torch.allclose(scorer.floor_center, reference.center.to(scorer.floor_center.dtype), atol=1e-5)
    assert torch.allclose(scorer.floor_scale, reference.spread.to(scorer.floor_scale.dtype), atol=1e-5)
    assert np.allclose(heads["floor"].numpy(), reference.scores(test.as_list()), atol=1e-4)
    combined = scorer.combine(heads)
    assert (combined >= heads["floor"] - 1e-6).all()
    silent = {**heads, **{name: torch.full_like(heads[name], -1e3) for name in ("evidence", "statistics")}}
    assert torch.equal(scorer.combine(silent), heads["floor"])  # no learned evidence: the score is the floor


def test_pooled_knn_floor_is_the_knn_reference_score_and_leaves_a_training_normal_out():
    scorer = fitted(floor="pooled_knn", floor_k=3)
    test = Features.cat([make(10, 7), make(5, 8, bump=3)])
    heads = scorer(test.as_list())
    raw = heads["floor"].double() * scorer.pooled_scale.double() + scorer.pooled_center.double()
    reference = knn_scores(pooled(data().normals), pooled(test), k=3, method="mean")
    assert np.allclose(raw.numpy(), reference, atol=1e-4)
    assert (scorer.combine(heads) >= heads["floor"] - 1e-6).all()
    own = scorer(data().normals[torch.arange(3)].as_list())["floor"] * scorer.pooled_scale + scorer.pooled_center
    assert own.min() > 0  # against itself its nearest neighbour would be at distance 0
    fresh = build_scorer(SPEC, ResidualPatchOptions(floor="pooled_knn", floor_k=3, patch_memory_fraction=0.5))
    fresh.load_state_dict(scorer.state_dict())
    assert torch.equal(fresh.eval()(test.as_list())["floor"], heads["floor"])
    patch = fitted()  # the maps are the patch distances whichever floor scores the image
    assert torch.equal(scorer.head_maps(test.as_list())[0]["floor"], patch.head_maps(test.as_list())[0]["floor"])


@pytest.mark.parametrize("form", ["floor_evidence", "floor_statistics", "floor_both"])
def test_every_floor_form_adds_only_non_negative_evidence(form):
    scorer = build_scorer(SPEC, ResidualPatchOptions(image_score=form, evidence_offset=1.0))
    heads = {
        "floor": torch.tensor([0.0, 1.0, -2.0]),
        "evidence": torch.tensor([-5.0, 0.5, 4.0]),
        "statistics": torch.tensor([-5.0, 3.0, 0.2]),
    }
    combined = scorer.combine(heads)
    assert (combined >= heads["floor"]).all()
    expected = {"floor_evidence": [0.0, 1.0, 1.0], "floor_statistics": [0.0, 3.0, -2.0], "floor_both": [0.0, 3.0, 1.0]}[
        form
    ]
    assert torch.allclose(combined, torch.tensor(expected))


def test_training_normals_are_scored_leave_one_out():
    scorer = fitted(patch_memory_fraction=1.0)
    own = scorer.head_maps(data().normals[torch.arange(3)].as_list())[0]["floor"]
    distance = own * scorer.floor_scale[0] + scorer.floor_center[0]
    assert distance.min() > 0  # with its own patches in the memory every distance would be 0


def test_draws_maps_that_peak_at_the_defect():
    scorer = fitted()
    test = make(2, 9)
    test.scales[0][1, 2, 1:3, 3:5] += 4.0
    test = Features((test.scales[0], torch.nn.functional.avg_pool2d(test.scales[0], 2)))
    maps = list(iter_maps(scorer, test.as_list(), [(24, 24), (24, 24)]))
    assert maps[1].shape == (24, 24) and maps[1].max() > maps[0].max()
    row, col = divmod(int(np.argmax(maps[1])), 24)
    assert 2 <= row <= 13 and 10 <= col <= 21  # positions 1-2 × 3-4 of a 6×6 grid, 4 pixels each


def test_map_statistics_count_positions_above_the_normal_thresholds():
    distance = torch.zeros(1, 10, 10)
    distance[0, :2, :5] = 3.0  # 10 of 100 positions high
    stats = map_statistics(distance, torch.tensor([1.0, 5.0]))
    assert stats.shape == (1, 7)
    assert stats[0, 0] == 3.0 and stats[0, 2] == 3.0 and abs(float(stats[0, 3]) - 0.3) < 1e-6
    assert abs(float(stats[0, 5]) - 0.1) < 1e-6 and stats[0, 6] == 0.0


def test_labels_move_the_learned_heads_and_not_the_floor():
    untrained = build_scorer(SPEC, ResidualPatchOptions(patch_memory_fraction=0.5))
    untrained.prepare(data().normals.as_list(), torch.Generator().manual_seed(0))
    trained = fitted()
    test = make(4, 11, bump=2).as_list()
    with torch.no_grad():
        before, after = untrained.eval()(test), trained(test)
    assert torch.allclose(before["floor"], after["floor"])
    assert not torch.allclose(before["statistics"], after["statistics"])
    assert not torch.allclose(before["evidence"], after["evidence"])


def test_saved_state_loads_into_a_fresh_scorer():
    scorer = fitted()
    fresh = build_scorer(SPEC, ResidualPatchOptions(patch_memory_fraction=0.5)).eval()
    fresh.load_state_dict(scorer.state_dict())
    test = make(3, 12).as_list()
    with torch.no_grad():
        assert torch.equal(fresh.combine(fresh(test)), scorer.combine(scorer(test)))


def test_scoring_before_prepare_is_a_clear_error():
    scorer = build_scorer(SPEC)
    with pytest.raises(DataError, match="call scorer.prepare"):
        scorer(make(2, 0).as_list())


def test_ahl_wraps_it_with_no_code_of_its_own():
    from ahl_plugins.ahl import AHLOptions, train_ahl
    from ahl_plugins.components import build_estimator

    options = AHLOptions(epochs=2, history=2, batch_size=12, outer_steps_per_epoch=2)
    scorer = build_scorer(SPEC, ResidualPatchOptions(patch_memory_fraction=0.5))
    before = {k: v.clone() for k, v in scorer.named_parameters()}
    trained, _history = train_ahl(
        scorer,
        build_loss(),
        data(),
        options,
        seed=0,
        estimator=lambda n: build_estimator(get_manager(), options, n, 0),
    )
    assert [k for k, v in trained.named_parameters() if not torch.equal(before[k], v)]
    scores = score_features(trained, make(5, 13, bump=2))
    assert scores.shape == (5,) and np.isfinite(scores).all()


def test_search_memo_changes_no_output_and_never_answers_for_another_memory():
    scorer = fitted()
    test = Features.cat([make(3, 14), make(2, 15, bump=1)]).as_list()
    with torch.no_grad():
        first = scorer(test)  # searched, then remembered
        assert len(scorer.search_memo.entries) >= 2 * 5
        again = scorer([t[torch.tensor([4, 0, 2])] for t in test])  # all hits, another order
        scorer.search_memo.clear()
        fresh = scorer(test)
    for name in scorer.head_names:
        assert torch.equal(first[name], fresh[name])
        assert torch.allclose(again[name], first[name][torch.tensor([4, 0, 2])], atol=1e-5)
    other = data(20).normals
    scorer.prepare(other.as_list(), torch.Generator().manual_seed(1))
    unseen = build_scorer(SPEC, ResidualPatchOptions(patch_memory_fraction=0.5))
    unseen.prepare(other.as_list(), torch.Generator().manual_seed(1))  # the same memory, its own empty memo
    with torch.no_grad():  # a new memory: what was searched in the old one is not an answer
        assert torch.equal(scorer(test)["floor"], unseen(test)["floor"])


def test_blocked_search_finds_the_same_patches_as_the_batched_one():
    scorer = fitted(patch_memory_fraction=0.3)
    # training normals (their own patches left out) beside new normals and defects
    samples = Features.cat([data().normals[torch.arange(6)], make(4, 17), make(3, 18, bump=2)])
    for s in range(2):
        memory, owner, keys = (getattr(scorer, f"{name}_{s}") for name in ("memory", "owner", "keys"))
        distance, index = nearest_patches(samples.scales[s], memory, owner.long(), keys)
        blocked_distance, blocked_index = nearest_patches_blocked(samples.scales[s], memory, owner.long(), keys)
        assert torch.equal(blocked_index, index)
        assert torch.allclose(blocked_distance, distance, rtol=1e-6, atol=1e-6)
        own = owner.long()[index[:6].flatten(1)]  # no training normal is matched to its own patches
        assert not (own == torch.arange(6)[:, None]).any()


def test_maps_leave_out_the_image_level_statistics_term():
    scorer = fitted(image_score="floor_statistics", evidence_offset=0.0)
    test = make(3, 16, bump=2).as_list()
    with torch.no_grad():
        heads = scorer(test)
        per_scale = scorer.head_maps(test)
        maps = dict(per_scale[0], statistics=per_scale[0]["statistics"][:, None, None])  # (B,): constant per image
        combined = scorer.combine(maps)
    assert torch.allclose(combined, per_scale[0]["floor"])  # the map is the floor's: where, not whether
    assert (scorer.combine(heads) >= heads["floor"]).all()


def with_masks(n: int, seed: int, bump: int) -> tuple[Features, torch.Tensor]:
    """Like :func:`make` with a defect at a random 2×2 block, and its 6×6 mask."""
    g = torch.Generator().manual_seed(seed)
    base = torch.randn(n, 6, 6, 6, generator=g) * 0.5
    masks = torch.zeros(n, 6, 6)
    corners = torch.randint(0, 5, (n, 2), generator=g)
    for i, (r, c) in enumerate(corners.tolist()):
        base[i, bump, r : r + 2, c : c + 2] += 2.0
        masks[i, r : r + 2, c : c + 2] = 1.0
    return Features((base, torch.nn.functional.avg_pool2d(base, 2))), masks


class CountingLoss:
    """The residual patch loss with per-position labels on, counting the calls that bring them."""

    uses_position_labels = True

    def __init__(self) -> None:
        from builtin_plugins.residual_patch import ResidualPatchLossOptions

        self.loss = build_loss(ResidualPatchLossOptions(position_weight=1.0))
        self.with_positions = 0

    def __call__(self, heads, labels, *, positions):
        self.with_positions += bool(positions) and set(positions) == {"evidence_map_0", "evidence_map_1"}
        return self.loss(heads, labels, positions=positions)


def test_trains_with_masks_and_its_evidence_map_finds_the_defects():
    from ahl_plugins.evaluation.metrics import auc_roc

    seen, seen_masks = with_masks(4, 1, bump=2)
    seen_masks[-1] = float("nan")  # one labelled anomaly without a mask
    pseudo, pseudo_masks = with_masks(8, 2, bump=4)
    data = TrainingData(make(40, 0), seen, {"patch": pseudo}, (), seen_masks, {"patch": pseudo_masks})
    torch.manual_seed(0)
    scorer = build_scorer(SPEC, ResidualPatchOptions(patch_memory_fraction=0.5))
    loss = CountingLoss()
    history = train_base(scorer, loss, data, FAST, seed=0)
    assert loss.with_positions == FAST.epochs * FAST.batches_per_epoch
    assert all(np.isfinite(r["loss"]) for r in history)
    test, test_masks = with_masks(10, 6, bump=2)
    with torch.no_grad():
        heads = scorer(test.as_list(), positions=True)
    assert set(heads) == {"floor", "evidence", "statistics", "evidence_map_0", "evidence_map_1"}
    assert set(scorer(test.as_list())) == {"floor", "evidence", "statistics"}  # scoring: the heads alone
    assert auc_roc(test_masks.flatten().numpy(), heads["evidence_map_0"].flatten().numpy()) > 0.85


def test_position_term_reads_known_positions_only_and_is_off_by_default():
    from builtin_plugins.residual_patch import ResidualPatchLossOptions
    from builtin_plugins.residual_patch.loss import position_term

    assert not build_loss().uses_position_labels
    assert build_loss(ResidualPatchLossOptions(position_weight=0.5)).uses_position_labels
    logits = torch.zeros(2, 3, 3, requires_grad=True)
    target = torch.zeros(2, 3, 3)
    target[0, 1, 1] = 1.0
    target[1] = float("nan")  # an anomaly without a mask
    value = position_term({"evidence_map_0": logits}, {"evidence_map_0": target})
    (grad,) = torch.autograd.grad(value, logits)
    assert torch.isfinite(value) and (grad[1] == 0).all()  # unknown positions: no gradient
    assert grad[0, 1, 1] < 0 and (grad[0].flatten()[[0, 1, 2, 3, 5, 6, 7, 8]] > 0).all()


def test_a_tiny_memory_still_holds_a_patch_of_another_image_for_every_normal():
    # 12 normals with 1×1 and 2×2 maps: 10% of 12 patches was one patch, so its image, scored with its own
    # patches left out, found nothing (inf distances, NaN statistics, a diverged fit)
    g = torch.Generator().manual_seed(0)
    base = torch.randn(12, 6, 2, 2, generator=g)
    normals = Features((base, torch.nn.functional.avg_pool2d(base, 2)))
    scorer = build_scorer(FeatureSpec("map", (6, 6)), ResidualPatchOptions(patch_memory_fraction=0.1))
    scorer.prepare(normals.as_list(), torch.Generator().manual_seed(0))
    for scale in range(2):
        assert scorer.get_buffer(f"owner_{scale}").unique().numel() >= 2
    assert torch.isfinite(scorer(normals.as_list())["floor"]).all()
