"""The shared patch memory: a remembered coreset is the computed one, and both nearest-patch searches agree."""

from __future__ import annotations

import torch
from torch.func import vmap

from ahl_plugins.features.patch_memory import (
    RECENT_CORESETS,
    as_patches,
    greedy_coreset,
    kcenter_greedy,
    nearest_patch_distance,
    nearest_patches,
    nearest_patches_blocked,
)


def maps(n: int, seed: int) -> torch.Tensor:
    return torch.randn(n, 8, 5, 5, generator=torch.Generator().manual_seed(seed))


def test_a_remembered_coreset_is_the_computed_one_and_leaves_the_generator_as_computing_does():
    RECENT_CORESETS.clear()
    patches = as_patches(maps(6, 0))
    first = torch.Generator().manual_seed(3)
    chosen = kcenter_greedy(patches, 20, 4, first)
    assert len(RECENT_CORESETS.entries) == 1
    again = torch.Generator().manual_seed(3)
    assert torch.equal(kcenter_greedy(patches, 20, 4, again), chosen)
    assert torch.equal(again.get_state(), first.get_state())  # later draws are what they would have been
    assert torch.equal(greedy_coreset(patches, 20, 4, torch.Generator().manual_seed(3)), chosen)


def test_any_other_input_is_computed_afresh():
    RECENT_CORESETS.clear()
    patches = as_patches(maps(6, 0))
    chosen = kcenter_greedy(patches, 20, 4, torch.Generator().manual_seed(3))
    other_seed = kcenter_greedy(patches, 20, 4, torch.Generator().manual_seed(4))
    moved = patches.clone()
    moved[0, 0] += 1e-3
    other_patches = kcenter_greedy(moved, 20, 4, torch.Generator().manual_seed(3))
    assert len(RECENT_CORESETS.entries) == 3
    assert torch.equal(other_seed, greedy_coreset(patches, 20, 4, torch.Generator().manual_seed(4)))
    assert torch.equal(other_patches, greedy_coreset(moved, 20, 4, torch.Generator().manual_seed(3)))
    assert not torch.equal(other_seed, chosen)
    RECENT_CORESETS.clear()


def test_the_memo_keeps_only_the_latest_coresets():
    RECENT_CORESETS.clear()
    patches = as_patches(maps(4, 1))
    for seed in range(RECENT_CORESETS.max_entries + 2):
        kcenter_greedy(patches, 5, 4, torch.Generator().manual_seed(seed))
    assert len(RECENT_CORESETS.entries) == RECENT_CORESETS.max_entries
    RECENT_CORESETS.clear()


def test_blocked_and_branch_free_searches_agree_and_skip_a_training_images_own_patches():
    normals = maps(5, 2)
    memory = as_patches(normals)  # every patch kept
    owner = torch.arange(5).repeat_interleave(25)
    keys = normals.mean(dim=(2, 3))
    samples = torch.cat([normals[:3], maps(2, 9)])  # three training normals, two new images
    distance, index = nearest_patches(samples, memory, owner, keys)
    blocked_distance, blocked_index = nearest_patches_blocked(samples, memory, owner, keys)
    assert torch.equal(blocked_index, index)
    assert torch.allclose(blocked_distance, distance, rtol=1e-6, atol=1e-6)
    assert not (owner[index[:3].flatten(1)] == torch.arange(3)[:, None]).any()  # never their own patches
    assert (distance[:3] > 0).all()
    # on plain tensors nearest_patch_distance is the blocked search; under vmap the branch-free one
    assert torch.equal(nearest_patch_distance(samples, memory, owner, keys), blocked_distance)
    batched = vmap(lambda x: nearest_patch_distance(x[None], memory, owner, keys)[0])(samples)
    assert torch.allclose(batched, distance, rtol=1e-6, atol=1e-6)


def test_search_memo_is_shared_by_copies_and_keyed_by_the_memory_searched():
    import copy

    from ahl_plugins.features.patch_memory import SearchMemo

    class Holder:
        def __init__(self) -> None:
            self.search_memo = SearchMemo()
            self.memory = torch.randn(6, 8)

    calls = []

    def search(rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        calls.append(len(rows))
        return rows.sum(dim=(1,)), rows.argmax(dim=1)

    first = Holder()
    x = maps(3, 4)
    got = first.search_memo.search((first.memory,), x, search)
    twin = copy.deepcopy(first)  # the guard's copies of one prepared scorer: other tensors, the same memory
    assert twin.search_memo is first.search_memo and twin.memory is not first.memory
    again = twin.search_memo.search((twin.memory,), x[1:], search)
    assert calls == [3] and torch.equal(again[0], got[0][1:]) and torch.equal(again[1], got[1][1:])
    twin.memory.add_(1.0)  # changed in place (load_state_dict copies into the buffers): searched afresh
    twin.search_memo.search((twin.memory,), x, search)
    first.search_memo.search((torch.randn(6, 8),), x[:1], search)  # another memory (functional_call's buffers)
    assert calls == [3, 3, 1]
    inside = []
    vmap(lambda t: inside.append(SearchMemo.usable(t)) or t)(x)  # a functorch-wrapped tensor: not memoised
    assert inside == [False] and SearchMemo.usable(x)
