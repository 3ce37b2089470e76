"""Anomaly maps from DevNet and DRA, base and AHL: shape, peak inside the known defect, errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from maps_testkit import FAST, HEIGHT, SQUARE, WIDTH, extractor, training_set, write_images

from ahl_plugins import OSADDetector
from ahl_plugins.errors import DataError
from ahl_plugins.maps import gaussian_blur


def _inside(row: float, col: float, corner: tuple[int, int], margin: float = 0.0) -> bool:
    top, left = corner
    return top - margin <= row < top + SQUARE + margin and left - margin <= col < left + SQUARE + margin


def _peak(values: np.ndarray) -> tuple[int, int]:
    row, col = np.unravel_index(np.argmax(values), values.shape)
    return int(row), int(col)


def _inside_beats_outside(image_map: np.ndarray, corner: tuple[int, int]) -> bool:
    square = np.zeros(image_map.shape, dtype=bool)
    square[corner[0] : corner[0] + SQUARE, corner[1] : corner[1] + SQUARE] = True
    return float(image_map[square].mean()) > float(image_map[~square].mean())


@pytest.mark.parametrize(("model", "ahl"), [("devnet", False), ("devnet", True)])
def test_devnet_map_peaks_inside_the_defect_square(tmp_path, model, ahl):
    X, y = training_set(tmp_path)
    options = dict(FAST, epochs=3, batches_per_epoch=4) if ahl else FAST
    detector = OSADDetector(model, ahl=ahl, extractor=extractor(), seed=0, **options).fit(X, y)
    paths, corners = write_images(tmp_path / "test", 4, seed=9, defect=True)
    maps = detector.anomaly_maps(paths)
    assert len(maps) == len(paths)
    for image_map, corner in zip(maps, corners, strict=True):
        assert image_map.shape == (HEIGHT, WIDTH)
        assert image_map.dtype == np.float32 and np.isfinite(image_map).all()
        assert _inside(*_peak(image_map), corner), (_peak(image_map), corner)
        assert _inside_beats_outside(image_map, corner)


def test_dra_maps_find_the_defect_square(tmp_path):
    """DRA's seen-abnormality head peaks inside the square; its residual head (a 3×3 conv on the
    difference to the reference normals) fires at the square's border, so the combined map peaks
    inside or at most one coarse feature cell (8 input pixels) outside it."""
    X, y = training_set(tmp_path)
    detector = OSADDetector("dra", extractor=extractor(), seed=0, **FAST).fit(X, y)
    paths, corners = write_images(tmp_path / "test", 4, seed=9, defect=True)
    maps = detector.anomaly_maps(paths)
    features = detector.features(paths)
    with torch.no_grad():
        seen = detector.scorer_.head_maps(features.scales)[0]["seen"]  # 16×16 grid, stride 4 on the 64-px input
    cell = 8 * WIDTH / 64
    for i, (image_map, corner) in enumerate(zip(maps, corners, strict=True)):
        assert image_map.shape == (HEIGHT, WIDTH)
        row, col = _peak(seen[i].numpy())
        assert _inside((row + 0.5) * 4 * HEIGHT / 64, (col + 0.5) * 4 * WIDTH / 64, corner), (row, col, corner)
        assert _inside(*_peak(image_map), corner, margin=cell), (_peak(image_map), corner)
        assert _inside_beats_outside(image_map, corner)


def test_maps_shrink_and_smooth_on_request(tmp_path):
    X, y = training_set(tmp_path)
    detector = OSADDetector("devnet", extractor=extractor(), seed=0, **FAST).fit(X, y)
    paths, _ = write_images(tmp_path / "test", 2, seed=9, defect=True)
    raw = detector.anomaly_maps(paths)
    small = detector.anomaly_maps(paths, max_side=36)
    smooth = detector.anomaly_maps(paths, sigma=4.0)
    assert small[0].shape == (24, 36)
    assert smooth[0].shape == raw[0].shape
    assert np.abs(np.diff(smooth[0], axis=1)).mean() < np.abs(np.diff(raw[0], axis=1)).mean()
    with pytest.raises(DataError, match="sigma"):
        detector.anomaly_maps(paths, sigma=-1)


def test_vector_features_have_no_maps():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 5)).astype(np.float32)
    y = np.r_[np.zeros(34), np.ones(6)].astype(int)
    detector = OSADDetector("devnet", seed=0, **FAST).fit(X, y)
    with pytest.raises(DataError, match="anomaly maps need image inputs and feature maps"):
        detector.anomaly_maps(X)


def test_gaussian_blur_keeps_mass_and_constants():
    impulse = torch.zeros(1, 21, 21)
    impulse[0, 10, 10] = 1.0
    blurred = gaussian_blur(impulse, 2.0)
    assert float(blurred.sum()) == pytest.approx(1.0, abs=1e-4)
    assert float(blurred[0, 10, 10]) == pytest.approx(1 / (2 * np.pi * 4), rel=0.02)
    assert torch.allclose(gaussian_blur(torch.full((2, 5, 9), 3.0), 3.0), torch.full((2, 5, 9), 3.0))


def test_an_ensemble_averages_its_members_maps():
    from ahl_plugins.ahl.ensemble import EnsembleScorer
    from ahl_plugins.contracts import FeatureSpec
    from ahl_plugins.maps import has_maps
    from builtin_plugins.devnet.scorer import DevNetScorer

    spec = FeatureSpec("map", (3, 3))
    torch.manual_seed(0)
    members = [DevNetScorer(spec), DevNetScorer(spec)]
    ensemble = EnsembleScorer(members)
    features = [torch.rand(2, 3, 6, 6), torch.rand(2, 3, 3, 3)]
    assert has_maps(ensemble)
    maps = ensemble.head_maps(features)
    expected = (members[0].head_maps(features)[1]["score"] + members[1].head_maps(features)[1]["score"]) / 2
    assert torch.allclose(maps[1]["score"], expected)
    assert not has_maps(EnsembleScorer([torch.nn.Linear(2, 2)]))


@pytest.mark.parametrize("model", ["devnet", "dra"])
def test_head_maps_are_what_the_heads_pool(model):
    """Each spatial head's score is the top-k mean of its map, averaged over scales; the holistic
    normal head's map is its score. So the maps and the image scores come from one computation."""
    from ahl_plugins.contracts import FeatureSpec
    from ahl_plugins.plugins import get_manager
    from builtin_plugins.heads import topk_mean

    entry = get_manager().get("scorers", model)
    spec = FeatureSpec("map", (6, 6))
    torch.manual_seed(0)
    scorer = entry.factory(spec, entry.parse_options({})).eval()
    features = [torch.rand(3, 6, 8, 8), torch.rand(3, 6, 4, 4)]
    scorer.prepare([torch.rand(8, 6, 8, 8), torch.rand(8, 6, 4, 4)], torch.Generator().manual_seed(0))
    with torch.no_grad():
        heads = scorer(features)
        maps = scorer.head_maps(features)
    ratio = entry.parse_options({}).topk_ratio
    for name, score in heads.items():
        per_scale = [m[name] if m[name].dim() == 1 else topk_mean(m[name].flatten(1), ratio) for m in maps]
        assert torch.allclose(torch.stack(per_scale).mean(dim=0), score, atol=1e-6), name


def test_a_map_generator_left_half_read_does_not_leave_autograd_off():
    """``iter_maps`` must not hold inference mode across a yield (a caller stopping early would lose autograd)."""
    import torch

    from ahl_plugins.maps import iter_maps

    class Heads(torch.nn.Module):
        head_names = ("seen",)

        def __init__(self) -> None:
            super().__init__()
            self.conv = torch.nn.Conv2d(4, 1, 1)

        def head_maps(self, scales):
            return [{"seen": self.conv(t)[:, 0]} for t in scales]

        def combine(self, heads):
            return heads["seen"]

    maps = iter_maps(Heads(), [torch.randn(3, 4, 5, 5)], [(10, 10)] * 3)
    next(maps)
    assert torch.is_grad_enabled() and not torch.is_inference_mode_enabled()
