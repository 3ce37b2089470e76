"""Parameter-free heads are computed once per sample in AHL, with the values the base models would compute."""

from __future__ import annotations

import pytest
import torch
from ahl_testkit import map_data, train_ahl

from ahl_plugins.ahl import AHLOptions
from builtin_plugins.dra import DRAOptions, build_loss, build_scorer, neighbours

FAST = {
    "epochs": 3,
    "history": 2,
    "batch_size": 12,
    "outer_steps_per_epoch": 1,
    "batches_per_epoch": 2,
    "n_clusters": 3,
}


def _fit(data, monkeypatch, *, share: bool):
    """AHL(DRA) with the patch distance head; ``share=False`` makes every base model search for itself."""
    calls = []
    search = neighbours.PatchDistance._patch_map

    def counted(self, scale, maps):  # what the scorer is asked to search (its memo may answer some of it)
        calls.append(int(maps.shape[0]))
        return search(self, scale, maps)

    monkeypatch.setattr(neighbours.PatchDistance, "_patch_map", counted)
    if not share:
        monkeypatch.setattr("ahl_plugins.ahl.trainer.fixed_heads", lambda *args: {})
    torch.manual_seed(0)
    scorer = build_scorer(data.normals.spec, DRAOptions(distance_form="patch", patch_memory_fraction=0.5))
    scorer, history = train_ahl(scorer, build_loss(), data, AHLOptions(**FAST), seed=0)
    monkeypatch.undo()
    return scorer, history, calls


def test_ahl_searches_the_patch_memory_once_per_sample_and_scores_as_if_each_base_model_searched(monkeypatch):
    data = map_data()
    shared, shared_history, shared_calls = _fit(data, monkeypatch, share=True)
    alone, alone_history, alone_calls = _fit(data, monkeypatch, share=False)
    for a, b in zip(shared_history["epochs"], alone_history["epochs"], strict=True):
        assert a["weights"] == pytest.approx(b["weights"], rel=1e-5, abs=1e-6)
    for x, y in zip(shared.state_dict().values(), alone.state_dict().values(), strict=True):
        torch.testing.assert_close(x, y, rtol=1e-5, atol=1e-6)
    # shared: the estimation rows once, then the calibration; alone: every task's base model every epoch
    # (two scales each time)
    assert sum(shared_calls) < sum(alone_calls) / 3
    n_tasks = len(shared_history["epochs"][0]["weights"])
    assert sum(alone_calls) >= n_tasks * FAST["epochs"] * max(shared_calls)


def test_fixed_heads_given_to_forward_replace_the_search_and_must_match_the_batch():
    from ahl_plugins.errors import DataError

    data = map_data()
    scorer = build_scorer(data.normals.spec, DRAOptions(distance_form="patch"))
    scorer.prepare(data.normals.as_list(), torch.Generator().manual_seed(0))
    scorer.eval()
    x = data.seen.as_list()
    fixed = scorer.fixed_heads(x)
    assert set(fixed) == {"distance"} and fixed["distance"].shape == (x[0].shape[0],)
    torch.testing.assert_close(scorer(x, fixed=fixed)["distance"], scorer(x)["distance"])
    assert torch.equal(
        scorer(x, fixed={"distance": torch.full((x[0].shape[0],), 7.0)})["distance"], torch.full((x[0].shape[0],), 7.0)
    )
    with pytest.raises(DataError, match="fixed head 'distance'.*exactly these samples"):
        scorer(x, fixed={"distance": fixed["distance"][:1]})
    pooled = build_scorer(data.normals.spec, DRAOptions(distance_form="pooled"))
    pooled.prepare(data.normals.as_list(), torch.Generator().manual_seed(0))
    assert pooled.fixed_heads(x) == {}  # the pooled head reads the task's bank: not task-independent
