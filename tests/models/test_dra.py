from __future__ import annotations

import pytest
import torch

from ahl_plugins.contracts import FeatureSpec
from ahl_plugins.errors import DataError, InvalidComponentError
from builtin_plugins.dra import DRAOptions, build_loss, build_scorer

HEADS = ("normal", "seen", "pseudo", "residual")


def prepared(spec, normals, seed=0, **options):
    scorer = build_scorer(spec, DRAOptions(**options))
    scorer.prepare(normals, torch.Generator().manual_seed(seed))
    return scorer


@pytest.mark.parametrize("kind", ["map", "vector"])
def test_four_heads_of_shape_b(kind, map_features):
    if kind == "map":
        feats = map_features(batch=5)
        spec = FeatureSpec("map", (8, 8))
    else:
        feats = [torch.randn(5, 6), torch.randn(5, 6)]
        spec = FeatureSpec("vector", (6, 6))
    scorer = prepared(spec, feats)
    out = scorer(feats)
    assert scorer.head_names == (*HEADS, "distance") and tuple(out) == scorer.head_names
    assert all(v.shape == (5,) for v in out.values())
    paper = prepared(spec, feats, distance_head=False)
    assert paper.head_names == HEADS and tuple(paper(feats)) == HEADS


def test_map_heads_have_the_paper_form():
    scorer = build_scorer(FeatureSpec("map", (16,)), DRAOptions(normal_hidden=32))
    heads = scorer.heads[0]
    assert heads.normal.hidden.weight.shape == (32, 16) and heads.normal.out.weight.shape == (1, 32)
    assert heads.seen.score.weight.shape == (1, 16, 1, 1)
    assert heads.residual.conv.weight.shape == (16, 16, 3, 3)
    assert isinstance(heads.residual.norm, torch.nn.GroupNorm)


def test_forward_before_prepare_is_a_clear_error():
    scorer = build_scorer(FeatureSpec("vector", (3,)))
    with pytest.raises(DataError, match="prepare"):
        scorer([torch.randn(2, 3)])


def test_prepare_averages_n_references_chosen_by_the_generator(map_features):
    normals = map_features(batch=12)
    scorer = prepared(FeatureSpec("map", (8, 8)), normals, seed=7, n_references=5, residual_reference="random_mean")
    chosen = torch.randperm(12, generator=torch.Generator().manual_seed(7))[:5]
    for scale in range(2):
        assert torch.allclose(scorer.reference(scale), normals[scale][chosen].mean(0))
    again = prepared(FeatureSpec("map", (8, 8)), normals, seed=7, n_references=5, residual_reference="random_mean")
    assert torch.equal(again.reference(0), scorer.reference(0))
    # fewer normals than references: all of them
    few = prepared(
        FeatureSpec("map", (8, 8)), [t[:3] for t in normals], n_references=5, residual_reference="random_mean"
    )
    assert torch.allclose(few.reference(1), normals[1][:3].mean(0))


def test_residual_head_reads_reference_minus_sample():
    spec = FeatureSpec("vector", (4,))
    normals = [torch.randn(10, 4)]
    scorer = prepared(spec, normals, residual_reference="random_mean")
    x = [torch.randn(3, 4)]
    before = scorer(x)
    scorer.reference_0 = scorer.reference_0 + 1.0
    after = scorer(x)
    for name in ("normal", "seen", "pseudo"):
        assert torch.equal(before[name], after[name])
    assert not torch.allclose(before["residual"], after["residual"])
    heads = scorer.heads[0]
    assert torch.allclose(after["residual"], heads.residual((scorer.reference_0 - x[0]).abs()))  # |residual| on vectors


def test_score_is_seen_plus_pseudo_plus_residual_minus_normal():
    # the paper's four heads; uncalibrated, so calibration is the identity
    scorer = build_scorer(FeatureSpec("vector", (2,)), DRAOptions(distance_head=False))
    heads = {
        "normal": torch.tensor([1.0, 4.0]),
        "seen": torch.tensor([2.0, 0.0]),
        "pseudo": torch.tensor([3.0, 1.0]),
        "residual": torch.tensor([0.5, 0.5]),
    }
    assert torch.equal(scorer.combine(heads), torch.tensor([4.5, -2.5]))
    unscored = build_scorer(FeatureSpec("vector", (2,)), DRAOptions(distance_head=False, score_normality=False))
    assert torch.equal(unscored.combine(heads), torch.tensor([5.5, 1.5]))  # the normality head left out


def test_scales_are_averaged_per_head(map_features):
    feats = map_features(batch=3)
    scorer = prepared(FeatureSpec("map", (8, 8)), feats, residual_reference="random_mean")
    out = scorer(feats)
    heads = scorer.heads[0]
    for name in ("normal", "seen", "pseudo"):
        per_scale = [getattr(heads, name)(x) for x in feats]
        assert torch.allclose(out[name], (per_scale[0] + per_scale[1]) / 2)
    residual = [heads.residual(scorer.reference(s) - x) for s, x in enumerate(feats)]
    assert torch.allclose(out["residual"], (residual[0] + residual[1]) / 2)


def test_state_dict_loads_into_an_unprepared_scorer(map_features):
    feats = map_features(batch=4)
    spec = FeatureSpec("map", (8, 8))
    trained = prepared(spec, feats)
    fresh = build_scorer(spec)
    fresh.load_state_dict(trained.state_dict())
    for name, value in fresh(feats).items():
        assert torch.equal(value, trained(feats)[name])


def test_mismatched_spatial_size_is_a_clear_error(map_features):
    scorer = prepared(FeatureSpec("map", (8, 8)), map_features())
    with pytest.raises(DataError, match="image size"):
        scorer(map_features(sizes=((5, 5), (3, 3))))


# --- the loss ---------------------------------------------------------------


def unit_loss():
    loss = build_loss()
    loss.deviation.mu, loss.deviation.sigma = 0.0, 1.0
    return loss


def test_loss_terms_against_hand_computation():
    loss = unit_loss()
    labels = torch.tensor([0, 0, 1, 2])
    heads = {
        "normal": torch.tensor([6.0, 2.0, 1.0, -1.0]),
        "seen": torch.tensor([1.0, -2.0, 4.0, 100.0]),
        "pseudo": torch.tensor([0.5, 0.5, 100.0, 7.0]),
        "residual": torch.tensor([1.0, 0.0, 3.0, 6.0]),
    }
    terms = loss.terms(heads, labels)
    # normal head: normals are its "anomalies" (need >= 5), anomalies its inliers (|dev|)
    assert terms["normal"].item() == pytest.approx((0 + 3 + 1 + 1) / 4)
    # seen head: normals and seen only (the pseudo sample's 100 is ignored)
    assert terms["seen"].item() == pytest.approx((1 + 2 + 1) / 3)
    # pseudo head: normals and pseudo only (the seen sample's 100 is ignored)
    assert terms["pseudo"].item() == pytest.approx((0.5 + 0.5 + 0) / 3)
    # residual head: everyone, both anomaly kinds as anomalies
    assert terms["residual"].item() == pytest.approx((1 + 0 + 2 + 0) / 4)
    assert loss(heads, labels).item() == pytest.approx(sum(t.item() for t in terms.values()))


def test_loss_masks_route_gradients_to_the_right_heads():
    loss = build_loss()
    labels = torch.tensor([0, 0, 1, 1, 2, 2])
    heads = {name: torch.full((6,), 1.5, requires_grad=True) for name in HEADS}
    loss(heads, labels).backward()
    normal, seen, pseudo = labels == 0, labels == 1, labels == 2
    assert torch.all(heads["seen"].grad[pseudo] == 0) and torch.all(heads["seen"].grad[~pseudo] != 0)
    assert torch.all(heads["pseudo"].grad[seen] == 0) and torch.all(heads["pseudo"].grad[~seen] != 0)
    assert torch.all(heads["residual"].grad != 0) and torch.all(heads["normal"].grad != 0)
    # normality head: normals pushed up, anomalies pulled towards the centre (down from 1.5)
    assert torch.all(heads["normal"].grad[normal] < 0) and torch.all(heads["normal"].grad[~normal] > 0)
    # residual head treats both anomaly kinds as anomalies
    assert torch.all(heads["residual"].grad[~normal] < 0) and torch.all(heads["residual"].grad[normal] > 0)


@pytest.mark.parametrize("labels", [[0, 0, 0], [0, 1, 1], [0, 2, 2], [1, 2, 2]])
def test_loss_is_finite_when_a_group_is_absent(labels):
    loss = unit_loss()
    labels = torch.tensor(labels)
    heads = {name: torch.tensor([1.0, 2.0, 3.0], requires_grad=True) for name in HEADS}
    value = loss(heads, labels)
    value.backward()
    assert torch.isfinite(value)
    assert all(torch.isfinite(h.grad).all() for h in heads.values())


def test_absent_groups_drop_out_of_their_heads():
    loss = unit_loss()
    heads = {name: torch.tensor([1.0, 2.0, 3.0]) for name in HEADS}
    no_pseudo = loss.terms(heads, torch.tensor([0, 1, 1]))
    assert no_pseudo["pseudo"].item() == pytest.approx(1.0)  # the one normal, |1|
    no_normal = loss.terms(heads, torch.tensor([1, 2, 2]))
    assert no_normal["seen"].item() == pytest.approx(4.0)  # the one seen anomaly, max(0, 5 - 1)
    assert no_normal["pseudo"].item() == pytest.approx((3.0 + 2.0) / 2)  # max(0, 5 - 2), max(0, 5 - 3)


def test_loss_needs_the_four_heads():
    with pytest.raises(InvalidComponentError, match="residual"):
        build_loss()(
            {"normal": torch.zeros(2), "seen": torch.zeros(2), "pseudo": torch.zeros(2)},
            torch.zeros(2, dtype=torch.long),
        )


def test_nearest_normal_reference_skips_the_sample_itself():
    """A training normal's residual is taken against its nearest *other* normals, never against itself."""
    from builtin_plugins.dra.scorer import nearest_normal_mean

    bank = torch.tensor([[0.0, 0.0], [1.0, 0.0], [10.0, 0.0], [11.0, 0.0]])
    anchor = nearest_normal_mean(bank, bank, k=1)
    torch.testing.assert_close(anchor, torch.tensor([[1.0, 0.0], [0.0, 0.0], [11.0, 0.0], [10.0, 0.0]]))
    query = torch.tensor([[10.4, 0.0]])
    torch.testing.assert_close(nearest_normal_mean(query, bank, k=2), torch.tensor([[10.5, 0.0]]))


def test_a_high_dimensional_training_normal_never_finds_itself():
    """512-d standardised features: float32 cancellation once left ~1 normal in 5 among its own neighbours."""
    from builtin_plugins.dra.scorer import nearest_normal_mean

    g = torch.Generator().manual_seed(0)
    bank = torch.randn(300, 512, generator=g) * torch.rand(512, generator=g) * 3 + 2  # uneven scales, non-zero mean
    bank = (bank - bank.mean(0)) / bank.std(0)
    anchor = nearest_normal_mean(bank, bank, k=1)
    own = (anchor - bank).abs().sum(dim=1) == 0
    assert int(own.sum()) == 0


def test_nearest_normal_reference_on_maps_averages_whole_maps_found_by_pooled_keys():
    from builtin_plugins.dra.scorer import nearest_normal_mean

    bank = torch.stack([torch.full((2, 3, 3), float(v)) for v in (0.0, 1.0, 5.0)])
    anchor = nearest_normal_mean(torch.full((1, 2, 3, 3), 4.0), bank, k=1)
    torch.testing.assert_close(anchor, torch.full((1, 2, 3, 3), 5.0))


def test_task_buffers_restrict_the_bank_to_each_task_s_support_normals():
    """For AHL's task_references="support": bank rows outside a task's support normals are excluded."""
    import numpy as np

    from builtin_plugins.dra.scorer import nearest_normal_mean

    normals = [torch.arange(40, dtype=torch.float32).reshape(20, 2)]
    scorer = prepared(FeatureSpec("vector", (2,)), normals, reference_bank_size=10, n_neighbors=3)
    rows = scorer.reference_rows.numpy()  # which of the 20 normals the bank of 10 holds
    support = [rows[:6], np.setdiff1d(np.arange(20), rows[:6]), rows[:2]]
    excluded = scorer.task_buffers(support)["reference_excluded"]
    assert excluded.shape == (3, 10)
    assert excluded[0].tolist() == [0.0] * 6 + [1.0] * 4
    assert excluded[1].tolist() == [1.0] * 6 + [0.0] * 4
    assert excluded[2].tolist() == [0.0] * 10  # 2 bank rows < n_neighbors + 1: the whole bank
    far = torch.tensor([[100.0, 100.0]])
    bank = scorer.reference(0)
    torch.testing.assert_close(nearest_normal_mean(far, bank, 1, excluded[0]), bank[5:6])
    torch.testing.assert_close(nearest_normal_mean(far, bank, 1), bank[9:10])
    assert "reference_excluded" not in scorer.state_dict()  # the unified model always keeps its whole bank
    assert prepared(FeatureSpec("vector", (2,)), normals, residual_reference="random_mean").task_buffers(support) == {}


def test_nearest_residual_is_the_default_and_the_bank_is_capped():
    normals = [torch.randn(50, 4)]
    scorer = prepared(FeatureSpec("vector", (4,)), normals, reference_bank_size=20)
    assert scorer.nearest and scorer.reference(0).shape == (20, 4)
    out = scorer([torch.randn(3, 4)])
    assert out["residual"].shape == (3,) and bool((out["residual"] >= 0).all())  # |.| output on vectors


def test_calibration_puts_every_head_on_the_normals_scale():
    torch.manual_seed(0)
    normals = [torch.randn(200, 5)]
    scorer = prepared(FeatureSpec("vector", (5,)), normals)
    scorer.calibrate(normals)
    with torch.no_grad():
        heads = scorer(normals)
    for i, name in enumerate(scorer.head_names):
        z = (heads[name] - scorer.head_center[i]) / scorer.head_scale[i]
        assert abs(float(torch.quantile(z, 0.5))) < 1e-5, name
        q1, q3 = torch.quantile(z, torch.tensor([0.25, 0.75]))
        assert float(q3 - q1) == pytest.approx(1.349, rel=1e-3), name
    # combine is the sum of calibrated heads, normal subtracted
    z = [(heads[n] - scorer.head_center[i]) / scorer.head_scale[i] for i, n in enumerate(scorer.head_names)]
    torch.testing.assert_close(scorer.combine(heads), z[1] + z[2] + z[3] - z[0] + z[4])


def test_distance_head_is_the_length_of_the_residual():
    normals = [torch.randn(30, 4)]
    scorer = prepared(FeatureSpec("vector", (4,)), normals)
    x = [torch.randn(3, 4)]
    from builtin_plugins.dra.scorer import nearest_normal_mean

    want = (nearest_normal_mean(x[0], scorer.reference(0), 5) - x[0]).norm(dim=1)
    torch.testing.assert_close(scorer(x)["distance"], want)


def test_paper_form_keeps_the_raw_sum():
    normals = [torch.randn(40, 5)]
    scorer = prepared(
        FeatureSpec("vector", (5,)),
        normals,
        head_calibration=False,
        residual_reference="random_mean",
        vector_head_output="linear",
        distance_head=False,
    )
    scorer.calibrate(normals)
    heads = scorer(normals)
    torch.testing.assert_close(
        scorer.combine(heads), heads["seen"] + heads["pseudo"] + heads["residual"] - heads["normal"]
    )
