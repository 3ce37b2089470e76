"""Named presets: whole configurations a user can ask for by one name.

``default`` is the library's own configuration, every value of which was
chosen on validation splits of training data (``docs/benchmarks/``).
``paper`` restores the AHL paper's settings (and the DevNet/DRA papers' forms
of the heads), with the authors' release defects still fixed, so anyone can
reproduce the paper's configuration; ``docs/deviations.md`` lists each place
where the two differ and the evidence. A preset fills options the user did
not give; explicit options always win.
"""

from __future__ import annotations

from typing import Any, Literal

from ahl_plugins.ahl.options import PAPER_AHL_OPTIONS

Preset = Literal["default", "paper"]
PRESETS: tuple[str, ...] = ("default", "paper")

#: section -> options; scorer and loss sections are keyed by the registered scorer / loss name.
_PAPER: dict[str, Any] = {
    "ahl_options": PAPER_AHL_OPTIONS,
    "train_options": {},
    "scorer_options": {
        "dra": {
            "residual_reference": "random_mean",
            "head_calibration": False,
            "vector_head_output": "linear",
            "vector_residual": "signed",
            "distance_head": False,
        },
        "devnet": {"hidden": [20]},
    },
    "loss_options": {},
}


def preset_options(preset: str, section: str, component: str | None = None) -> dict[str, Any]:
    """The options ``preset`` sets in ``section`` (for ``component`` where the section is per component)."""
    if preset == "default":
        return {}
    values = _PAPER.get(section, {})
    if section in ("scorer_options", "loss_options"):
        values = values.get(component or "", {})
    return dict(values)
