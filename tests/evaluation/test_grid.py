from __future__ import annotations

import pytest

from ahl_plugins.errors import InvalidOptionsError
from ahl_plugins.evaluation.grid import (
    Cell,
    SplitKey,
    build_grid,
    parse_n_anomalies,
    parse_settings,
    slug,
)


def test_grid_groups_cells_by_split_with_knn_first():
    grid = build_grid(["devnet", "dra"], ["general", "hard"], [1, 10], ["a", "b"], [0, 1], knn_rows=[("knn", "devnet")])
    # general: 2 M x 2 seeds; hard: 2 M x 2 types x 2 seeds
    assert len(grid) == 4 + 8
    split, cells = grid[0]
    assert split == SplitKey("general", 1, "all", 0)
    assert [(c.model, c.variant) for c in cells] == [
        ("knn", "knn"),
        ("devnet", "base"),
        ("devnet", "ahl"),
        ("dra", "base"),
        ("dra", "ahl"),
    ]
    ids = [c.id for _, cs in grid for c in cs]
    assert len(ids) == len(set(ids))


def test_ablations_add_variants_with_their_ahl_option():
    ((_, cells),) = build_grid(["devnet"], ["general"], [10], [], [0], ablations=True)
    assert [c.variant for c in cells] == ["base", "ahl", "ahl_uniform", "ahl_random_tasks", "ahl_ensemble"]
    assert cells[0].detector_kwargs() == {"ahl": False}
    assert cells[2].detector_kwargs() == {"ahl": True, "ablation": "uniform"}
    assert cells[4].detector_kwargs() == {"ahl": True, "ablation": "ensemble"}


def test_train_seed_replicates_refit_each_variant_with_their_own_seed():
    ((split, cells),) = build_grid(["devnet"], ["general"], [10], [], [2], knn_rows=[("knn", "devnet")], train_seeds=3)
    assert [(c.variant, c.replicate) for c in cells] == [
        ("knn", 0),
        ("base", 0),
        ("ahl", 0),
        ("base", 1),
        ("ahl", 1),
        ("base", 2),
        ("ahl", 2),
    ]
    # replicate 0 keeps the split's seed and id (directories from before --train-seeds resume); others get their own
    assert cells[1].id == Cell(split, "devnet", "base").id and cells[1].train_seed == 2
    assert [c.train_seed for c in cells[1:]] == [2, 2, 1002, 1002, 2002, 2002]
    assert len({c.id for c in cells}) == len(cells)


def test_cell_ids_are_file_safe_and_distinct():
    a = Cell(SplitKey("hard", 10, "R2L/U2R", 0), "devnet", "ahl")
    b = Cell(SplitKey("hard", 10, "R2L_U2R", 0), "devnet", "ahl")
    assert "/" not in a.id and a.id != b.id
    assert slug("crack") == "crack"


def test_parsers():
    assert parse_settings("both") == ("general", "hard")
    assert parse_n_anomalies("1, 10,1") == (1, 10)
    with pytest.raises(InvalidOptionsError, match="general, hard or both"):
        parse_settings("easy")
    with pytest.raises(InvalidOptionsError, match="positive"):
        parse_n_anomalies("0")
