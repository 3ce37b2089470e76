"""The detector's configuration: one pydantic model, saved beside the weights."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

FORMAT_VERSION = 1
#: The option sections of a detector (``DetectorConfig`` fields that hold a dict of options).
SECTIONS = (
    "extractor_options",
    "scorer_options",
    "loss_options",
    "train_options",
    "ahl_options",
    "finetune_options",
    "map_statistics_options",
)


class DetectorConfig(BaseModel):
    """Everything needed to rebuild a detector; component options stay raw dicts here and
    are validated by each component's own pydantic model when it is built."""

    model_config = ConfigDict(extra="forbid")

    model: str = "devnet"
    ahl: bool = False
    preset: Literal["default", "paper"] = Field(
        "default",
        description="default: the configuration chosen on validation data; paper: the AHL paper's settings "
        "(ahl_plugins.presets); explicit options override either",
    )
    extractor: str | None = Field(None, description="registered extractor name; None = the model's default")
    extractor_file: str | None = Field(
        None, description="TorchScript file of the user's own network, used as the extractor (instead of a name)"
    )
    extractor_options: dict[str, Any] = Field(default_factory=dict)
    scorer_options: dict[str, Any] = Field(default_factory=dict)
    loss_options: dict[str, Any] = Field(default_factory=dict)
    train_options: dict[str, Any] = Field(default_factory=dict, description="TrainOptions (base loop)")
    ahl_options: dict[str, Any] = Field(default_factory=dict, description="AHLOptions (AHL learner)")
    finetune_backbone: bool = Field(
        False, description="train the backbone end to end with the heads first (images; AHL then uses its features)"
    )
    finetune_options: dict[str, Any] = Field(
        default_factory=dict,
        description="FinetuneOptions (end-to-end base training; with ahl=False, train_options too)",
    )
    map_statistics: Literal["off", "learned", "floor_learned"] = Field(
        "off",
        description="image score from statistics of the model's anomaly map (SegAD-class; models that draw maps, "
        "on images): off (the model's own score) | learned (a logistic classifier on the map statistics, fitted "
        "on the training normals and labelled anomalies after training) | floor_learned (the model's calibrated "
        "score plus the classifier's non-negative evidence: labels add, never subtract). docs/maps.md",
    )
    map_statistics_options: dict[str, Any] = Field(
        default_factory=dict, description="MapStatisticsOptions (offset, weight, regularization, max_normals)"
    )
    pseudo_anomalies: list[str] | None = Field(
        None,
        description="pseudo-anomaly generator names; None = every generator that fits the input kind, except "
        "opt-in ones (a generator with default = False, e.g. local_noise, knn_extrapolate)",
    )
    n_pseudo: int = Field(100, ge=0, description="pseudo anomalies made per generator")
    contamination: float = Field(0.05, gt=0.0, lt=0.5, description="share of training normals predict() flags")
    seed: int = 0
    device: str = "cpu"
    extract_batch_size: int = Field(32, ge=1, description="images or rows per feature-extraction batch")
    cache_dir: str | None = None
    use_cache: bool = True
    progress: bool = False


DETECTOR_KEYS = frozenset(DetectorConfig.model_fields) - set(SECTIONS)
#: How a detector runs, not what it computes: left out of a saved model and given again when it is loaded.
RUNTIME_KEYS = ("device", "cache_dir", "use_cache", "extract_batch_size", "progress")
