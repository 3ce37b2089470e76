"""Scores of every built-in model under a fixed seed, stored so that a refactor can prove it changed nothing.

``python tests/detector/saved_scores.py`` rewrites ``saved_scores.json`` (only after a deliberate change of
behaviour, said in the commit); ``test_saved_scores.py`` recomputes each case and compares.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

STORE = Path(__file__).with_name("saved_scores.json")
FAST = {"epochs": 2, "batches_per_epoch": 3, "n_pseudo": 16, "use_cache": False}
TINY_RESNET = {"weights": "none", "image_size": 32, "scales": 1, "layers": ["layer3"]}

#: name -> detector arguments; "images" cases run on a tiny MVTec-style folder with an untrained ResNet-18.
CASES: dict[str, dict[str, Any]] = {
    "devnet": {"model": "devnet"},
    "devnet_ahl": {"model": "devnet", "ahl": True},
    "dra": {"model": "dra"},
    "dra_ahl": {"model": "dra", "ahl": True},
    "dra_ahl_paper": {"model": "dra", "ahl": True, "preset": "paper"},
    "devnet_ahl_ensemble": {"model": "devnet", "ahl": True, "ablation": "ensemble"},
    "images_devnet": {"model": "devnet", "images": True},
    "images_dra": {"model": "dra", "images": True},
    "images_dra_ahl": {"model": "dra", "ahl": True, "images": True},
}


def vectors() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    normal = rng.normal(size=(120, 8)).astype(np.float32)
    anomalies = rng.normal(size=(30, 8)).astype(np.float32)
    anomalies[:, :3] += 4.0
    X = np.concatenate([normal[:90], anomalies[:6]])
    y = np.r_[np.zeros(90), np.ones(6)].astype(int)
    return X, y, np.concatenate([normal[90:], anomalies[6:]])


def images(root: Path) -> tuple[list[Path], np.ndarray, list[Path]]:
    rng = np.random.default_rng(1)

    def write(folder: Path, n: int, defect: bool) -> list[Path]:
        folder.mkdir(parents=True, exist_ok=True)
        paths = []
        for i in range(n):
            image = (rng.random((40, 40)) * 60 + 60).astype(np.uint8)
            if defect:
                x, y = rng.integers(4, 28, size=2)
                image[y : y + 10, x : x + 10] = 250
            Image.fromarray(image).save(folder / f"{i:03d}.png")
            paths.append(folder / f"{i:03d}.png")
        return paths

    normal, defects = write(root / "good", 24, False), write(root / "scratch", 10, True)
    X = normal[:16] + defects[:4]
    y = np.r_[np.zeros(16), np.ones(4)].astype(int)
    return X, y, normal[16:] + defects[4:]


def case_scores(name: str, root: Path, save_dir: Path | None = None) -> dict[str, list[float]]:
    """Test scores of one case, and (images) the sum of each anomaly map; with ``save_dir`` via save/load."""
    from ahl_plugins import OSADDetector

    args = dict(CASES[name])
    on_images = args.pop("images", False)
    if on_images:
        X, y, X_test = images(root)
        args.update(extractor="resnet18", extractor_options=TINY_RESNET)
    else:
        X, y, X_test = vectors()
    detector = OSADDetector(seed=3, **args, **FAST).fit(X, y)
    if save_dir is not None:
        detector.save(save_dir)
        detector = OSADDetector.load(save_dir)
    out = {"scores": [float(s) for s in detector.decision_function(X_test)]}
    if on_images:
        out["map_sums"] = [float(m.sum()) for m in detector.anomaly_maps(X_test[:3])]
    return out


if __name__ == "__main__":
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        stored = {name: case_scores(name, Path(tmp) / name) for name in CASES}
    STORE.write_text(json.dumps(stored, indent=1) + "\n")
    print(f"wrote {STORE}")
