"""Choosing a torch device: CPU by default, CUDA only when asked for."""

from __future__ import annotations

from ahl_plugins.errors import AHLError


def resolve_device(device: str | None = "cpu"):
    """``"cpu"``, ``"cuda"``/``"cuda:N"`` (error if unavailable), or ``"auto"``."""
    import torch

    name = (device or "cpu").strip().lower()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise AHLError(f"device {device!r} was asked for but CUDA is not available here; use device='cpu'")
        return torch.device(name)
    if name != "cpu":
        raise AHLError(f"unknown device {device!r}; use 'cpu', 'cuda', 'cuda:N' or 'auto'")
    return torch.device("cpu")
