"""Fixing torch's global RNG for one block, without disturbing anyone else's random state.

Module constructors and dropout draw from the global generator; everything
else in ahl-plugins takes an explicit ``torch.Generator``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch


@contextlib.contextmanager
def seeded(seed: int, device: torch.device | str | None = None) -> Iterator[None]:
    """Seed the CPU (and ``device``'s CUDA) generator inside a fork that is restored afterwards."""
    device = torch.device(device) if device is not None else None
    devices = [device.index or 0] if device is not None and device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(int(seed))
        yield
