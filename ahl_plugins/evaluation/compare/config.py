"""What a compare runs (:class:`CompareConfig`) and where and how it runs."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from ahl_plugins.errors import InvalidOptionsError
from ahl_plugins.evaluation.grid import KNN, PATCH_FORMS, REFERENCE_FORMS, SETTINGS

#: Fields that change where and how fast a grid runs, never what it computes: a resume ignores them.
RUN_FIELDS = frozenset({"device", "cache_dir", "progress", "threads", "jobs", "executor", "ray_address"})


class CompareConfig(BaseModel):
    """What a compare runs. Everything except the fields in :data:`RUN_FIELDS` must
    match for a restarted compare to resume a directory."""

    model_config = ConfigDict(extra="forbid")

    data: str = Field(
        ..., description="what ahl_plugins.data.load.load_dataset takes: folder, .npz, .csv/.tsv, elpv, digits"
    )
    models: list[str] = Field(default_factory=lambda: ["devnet", "dra"], min_length=1)
    settings: list[str] = Field(default_factory=lambda: ["general"], min_length=1)
    n_anomalies: list[int] = Field(default_factory=lambda: [10], min_length=1)
    anomaly_types: list[str] | None = Field(None, description="seen types for the hard setting; None = every type")
    seeds: int = Field(3, ge=1, description="seeds 0 .. seeds-1; each seed draws its own split")
    train_seeds: int = Field(
        1, ge=1, description="fits of every split with independent training seeds (split and training noise apart)"
    )
    ablations: bool = False
    extractor: str | None = None
    extractor_options: dict[str, Any] = Field(default_factory=dict, description="options of the feature extractor")
    epochs: int | None = Field(None, ge=1, description="override the trainers' epochs (for a quick pass)")
    finetune_backbone: bool = Field(
        False, description="base = fine-tuned end to end; AHL on its frozen features; k-NN also on those features"
    )
    k: int = Field(5, ge=1, description="neighbours of the k-NN reference")
    references: list[str] | None = Field(
        None,
        description="reference rows: kth (pooled k-NN, k-th neighbour), mean (pooled, mean of the k), "
        "patchcore (nearest normal patch); labelled, opt-in: patchcore_stats / patchcore_floor_stats (map "
        "statistics of the patchcore maps, classified with the labels: alone / on the patchcore floor); None: kth "
        "on vectors; kth, mean and patchcore on images (chosen on validation: docs/benchmarks/image_references.md)",
    )
    coreset_fraction: float = Field(0.1, gt=0, le=1, description="share of training patches the patchcore row keeps")
    options: dict[str, Any] = Field(default_factory=dict, description="detector options for every model variant")
    ahl_options: dict[str, Any] = Field(default_factory=dict, description="extra options for the AHL variants only")
    dataset_options: dict[str, Any] = Field(default_factory=dict, description="keyword arguments of load_dataset")
    device: str = "cpu"
    cache_dir: str | None = None
    progress: bool = True
    threads: int | None = Field(
        None,
        ge=1,
        description="torch CPU threads per running cell (None: torch's default, or cores / jobs with --jobs)",
    )
    jobs: int = Field(1, ge=1, description="local worker processes running cells at once (1: in this process)")
    executor: Literal["local", "ray"] = Field("local", description="local processes, or one Ray task per cell")
    ray_address: str | None = Field(
        None, description="an existing Ray cluster (default: $RAY_ADDRESS, else a local Ray)"
    )

    @field_validator("settings")
    @classmethod
    def _settings(cls, value: list[str]) -> list[str]:
        bad = [s for s in value if s not in SETTINGS]
        if bad:
            raise ValueError(f"unknown setting(s) {bad}; use {list(SETTINGS)}")
        return list(dict.fromkeys(value))

    @field_validator("n_anomalies")
    @classmethod
    def _n_anomalies(cls, value: list[int]) -> list[int]:
        if any(n < 1 for n in value):
            raise ValueError(f"n_anomalies must be >= 1, got {value}")
        return list(dict.fromkeys(value))

    @field_validator("references")
    @classmethod
    def _references(cls, value: list[str] | None) -> list[str] | None:
        if value is None:
            return None
        value = [v.strip() for v in value if v.strip()]
        bad = [v for v in value if v not in REFERENCE_FORMS]
        if bad:
            raise ValueError(f"unknown reference(s) {bad}; use {list(REFERENCE_FORMS)}")
        return list(dict.fromkeys(value))

    def reference_forms(self, input_kind: str) -> list[str]:
        """The reference rows this compare adds on ``input_kind`` data (the patchcore rows need images)."""
        if self.references is None:  # validation: mean and patch beat kth by more than noise on the image families
            return ["kth", "mean", "patchcore"] if input_kind == "image" else ["kth"]
        return [f for f in self.references if f not in PATCH_FORMS or input_kind == "image"]

    @field_validator("models")
    @classmethod
    def _models(cls, value: list[str]) -> list[str]:
        value = [m.strip() for m in value if m.strip()]
        if not value:
            raise ValueError("at least one model is needed")
        if KNN in value:
            raise ValueError("'knn' is the reference row every compare adds; it is not a model to pass")
        return list(dict.fromkeys(value))

    @model_validator(mode="after")
    def _executor(self) -> CompareConfig:
        if self.executor == "ray" and self.jobs != 1:
            raise ValueError(
                "--jobs is for the local executor; with --executor ray every cell is a Ray task and the cluster's "
                "CPUs decide how many run at once (each asks for --threads CPUs)"
            )
        if self.ray_address and self.executor != "ray":
            raise ValueError("--ray-address needs --executor ray")
        return self

    def identity(self) -> dict[str, Any]:
        """The arguments that decide the results (what a resume must match).

        ``train_seeds`` appears only above 1, so directories written before it existed still resume.
        """
        identity = self.model_dump(mode="json", exclude=set(RUN_FIELDS))
        if identity.get("train_seeds") == 1:
            del identity["train_seeds"]
        # fields added later, at their defaults, stay out too (older directories resume and gain the new rows)
        if identity.get("references") is None:
            identity.pop("references", None)
        if identity.get("coreset_fraction") == 0.1:
            identity.pop("coreset_fraction", None)
        return identity

    @property
    def seed_list(self) -> list[int]:
        return list(range(self.seeds))


def parse_config(**values: Any) -> CompareConfig:
    """``CompareConfig(**values)`` with pydantic's errors turned into a readable :class:`InvalidOptionsError`."""
    try:
        return CompareConfig(**values)
    except ValidationError as exc:
        lines = [f"{'.'.join(str(p) for p in err['loc']) or 'arguments'}: {err['msg']}" for err in exc.errors()]
        raise InvalidOptionsError("invalid compare arguments: " + "; ".join(lines)) from None
