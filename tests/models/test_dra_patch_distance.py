"""DRA's patch-level distance head: nearest normal patch per position, own patches skipped, in score and maps."""

from __future__ import annotations

import pytest
import torch

from ahl_plugins.contracts import FeatureSpec
from ahl_plugins.features.patch_memory import nearest_patch_distance
from builtin_plugins.dra import DRAOptions, build_scorer


def maps(n: int, seed: int, channels: int = 8, size: int = 6) -> torch.Tensor:
    return torch.randn(n, channels, size, size, generator=torch.Generator().manual_seed(seed))


def prepared(normals, **options):
    scorer = build_scorer(FeatureSpec("map", (8,)), DRAOptions(distance_form="patch", **options))
    scorer.prepare([normals], torch.Generator().manual_seed(0))
    return scorer.eval()


def test_defect_patch_raises_the_distance_head_and_its_map_peaks_there():
    normals = maps(12, 0) * 0.1
    scorer = prepared(normals, patch_memory_fraction=0.5)
    test = maps(3, 1) * 0.1
    test[1, :, 2, 4] += 3.0
    heads = scorer([test])
    assert int(torch.argmax(heads["distance"])) == 1
    (scale,) = scorer.head_maps([test])
    distance_map = scale["distance"][1]
    assert divmod(int(torch.argmax(distance_map)), 6) == (2, 4)


def test_a_training_normal_skips_its_own_patches_like_a_test_sample():
    normals = maps(10, 2)
    scorer = prepared(normals, patch_memory_fraction=1.0)
    own = scorer.head_maps([normals[:3]])[0]["distance"]
    assert own.min() > 0  # with its own patches in the memory it would be exactly 0 everywhere
    memory, owner, keys = scorer.patch_memory_0, scorer.patch_owner_0, scorer.patch_keys_0
    assert len(memory) == 10 * 36 and torch.equal(nearest_patch_distance(normals[:3], memory, owner, keys), own)


def test_memory_keeps_the_fraction_and_survives_save_and_load():
    normals = maps(10, 3)
    scorer = prepared(normals, patch_memory_fraction=0.1)
    assert scorer.patch_memory_0.shape == (36, 8) and scorer.patch_keys_0.shape == (10, 8)
    fresh = build_scorer(FeatureSpec("map", (8,)), DRAOptions(distance_form="patch")).eval()
    fresh.load_state_dict(scorer.state_dict())
    test = maps(4, 4)
    assert torch.equal(fresh([test])["distance"], scorer([test])["distance"])


def test_patch_form_is_the_default_and_vectors_ignore_it():
    assert DRAOptions().distance_form == "patch"
    vectors = build_scorer(FeatureSpec("vector", (6,)), DRAOptions(distance_form="patch"))
    vectors.prepare([torch.randn(8, 6)], torch.Generator().manual_seed(0))
    assert vectors([torch.randn(3, 6)])["distance"].shape == (3,)


def test_confident_combine_keeps_the_distance_ranking_unless_a_labelled_head_is_sure():
    from ahl_plugins.errors import InvalidOptionsError
    from ahl_plugins.plugins import get_manager

    scorer = prepared(maps(12, 5), combine="confident", confident_spreads=2.0)
    names = scorer.head_names
    heads = {name: torch.zeros(3) for name in names}
    heads["distance"] = torch.tensor([1.0, 2.0, 3.0])
    heads["seen"] = torch.tensor([0.0, 1.9, 5.0])  # below the threshold: nothing; 5 spreads: +3
    heads["normal"] = torch.tensor([9.0, -9.0, 0.0])  # normality is left out
    scorer.head_center.zero_()
    scorer.head_scale.fill_(1.0)
    assert torch.allclose(scorer.combine(heads), torch.tensor([1.0, 2.0, 6.0]))
    entry = get_manager().get("scorers", "dra")
    with pytest.raises(InvalidOptionsError, match="keep distance_head=True"):
        entry.parse_options({"combine": "confident", "distance_head": False})


def test_max_pooling_scores_the_farthest_position_as_patchcore_does():
    normals = maps(12, 6)
    test = maps(3, 7)
    pooled = {
        pooling: prepared(normals, patch_memory_fraction=0.5, distance_pooling=pooling) for pooling in ("topk", "max")
    }
    distance_map = pooled["max"].head_maps([test])[0]["distance"]
    assert torch.allclose(pooled["max"]([test])["distance"], distance_map.flatten(1).amax(dim=1))
    assert torch.all(pooled["max"]([test])["distance"] >= pooled["topk"]([test])["distance"])
    assert torch.equal(pooled["topk"].head_maps([test])[0]["distance"], distance_map)  # pooling changes no map
