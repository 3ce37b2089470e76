"""End-to-end base training: the backbone fine-tuned together with the scoring heads.

The paper's pipeline trains the base model (DRA or DevNet) end to end with its
own loss, backbone included, and only then runs AHL on the frozen features of
that trained network. This module is the first half: the model's registered
scorer and loss, balanced batches of normal / seen / pseudo-anomaly *images*
(pseudo anomalies made in image space by the registered generators), the
extractor's own image pyramid, a smaller learning rate for the backbone than
for the heads, and BatchNorm statistics frozen (batches of 48 split three ways
are too small to re-estimate them). On CUDA the forward pass runs under
``torch.autocast`` (float16 with a gradient scaler) unless
``mixed_precision=False``; on the CPU everything stays float32.

Scorers whose ``prepare`` reads training normals (DRA's reference maps) get
them refreshed, computed by the current backbone without gradient (a few
before every batch, a larger bank once per epoch), and once more at the end,
so the saved buffer matches the final weights. The heads are then calibrated
on every training normal's final features, as the base and AHL trainers
calibrate them. The result is cached (keyed by the pretrained extractor, the images,
the options and the seed), so base and AHL runs on one split fine-tune once.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import torch
from pydantic import Field
from torch import nn

from ahl_plugins.contracts import FeatureExtractor, Loss
from ahl_plugins.errors import DataError, InvalidOptionsError
from ahl_plugins.features.cache import FeatureCache, cache_key
from ahl_plugins.features.module_extractor import weights_fingerprint
from ahl_plugins.training.batches import balanced_indices
from ahl_plugins.training.calibration import calibrate_scorer
from ahl_plugins.training.loop import run_epochs
from ahl_plugins.training.options import TrainOptions
from ahl_plugins.training.positions import Supervision

if TYPE_CHECKING:
    from ahl_plugins.contracts import ScorerModule

CACHE_VERSION = "finetune-v2"  # v2: the reference bank as large as the scorer keeps, calibrated heads
#: Normals whose current features a scorer's ``prepare`` gets when it names no ``n_references``.
DEFAULT_PREPARE_NORMALS = 32
#: Reference sets up to this size are recomputed before every batch, larger ones once per epoch.
REFRESH_EACH_STEP_MAX = 32


class FinetuneOptions(TrainOptions):
    """The base loop's options plus what only end-to-end training needs."""

    backbone_lr: float = Field(2e-5, gt=0, description="Adam learning rate of the backbone (the heads use lr)")
    freeze_batchnorm: bool = Field(True, description="keep the backbone's BatchNorm running statistics fixed")
    mixed_precision: bool = Field(True, description="float16 autocast with gradient scaling on CUDA (ignored on CPU)")


FINETUNE_ONLY_OPTIONS = frozenset(FinetuneOptions.model_fields) - frozenset(TrainOptions.model_fields)


@runtime_checkable
class FinetunableExtractor(Protocol):
    """What an extractor offers so that its weights can be trained (built-in CNNs and ModuleExtractor)."""

    def forward_features(self, batch: torch.Tensor) -> list[torch.Tensor]: ...

    def trainable_module(self) -> nn.Module: ...

    def mark_finetuned(self, fingerprint: str) -> None: ...


def require_finetunable(extractor: object) -> FinetunableExtractor:
    if not isinstance(extractor, FinetunableExtractor):
        raise InvalidOptionsError(
            f"extractor {getattr(extractor, 'name', type(extractor).__name__)!r} cannot be fine-tuned: it has no "
            "forward_features/trainable_module (the built-in CNNs, nn.Module and TorchScript extractors have them); "
            "use finetune_backbone=False to train the heads on its frozen features"
        )
    return extractor


_BATCHNORM_NAMES = frozenset({"BatchNorm1d", "BatchNorm2d", "BatchNorm3d", "SyncBatchNorm"})


def _is_batchnorm(module: nn.Module) -> bool:
    # A scripted network's submodules are RecursiveScriptModules that only keep their class name.
    return (
        isinstance(module, nn.modules.batchnorm._BatchNorm) or getattr(module, "original_name", "") in _BATCHNORM_NAMES
    )


def _set_train_mode(network: nn.Module, freeze_batchnorm: bool) -> None:
    network.train()
    if freeze_batchnorm:
        for module in network.modules():
            if _is_batchnorm(module):
                module.eval()


def _state_tensors(module: nn.Module) -> list[torch.Tensor]:
    return [t.detach().cpu() for _, t in sorted(module.state_dict().items())]


def _restore(module: nn.Module, tensors: list[torch.Tensor]) -> None:
    names = sorted(module.state_dict())
    module.load_state_dict(dict(zip(names, tensors, strict=True)))


class _References:
    """The training normals a scorer's ``prepare`` reads, refreshed through the current backbone.

    A scorer says how many it keeps with ``reference_normals`` (DRA's nearest-normal bank: up to 256 maps)
    or ``n_references`` (the paper's 5 averaged normals). Up to ``REFRESH_EACH_STEP_MAX`` of them are
    recomputed before every batch; a larger bank once per epoch, as a forward pass over it costs several
    batches.
    """

    def __init__(self, scorer: ScorerModule, normals: torch.Tensor, generator: torch.Generator) -> None:
        count = int(getattr(scorer, "reference_normals", 0) or getattr(scorer, "n_references", 0) or 0)
        self.refresh_each_step = 0 < count <= REFRESH_EACH_STEP_MAX
        self.refresh_each_epoch = count > REFRESH_EACH_STEP_MAX
        count = count or DEFAULT_PREPARE_NORMALS
        chosen = torch.randperm(len(normals), generator=generator)[: min(count, len(normals))]
        self.images = normals[chosen]
        self.scorer = scorer

    @torch.no_grad()
    def update(
        self, extractor: FinetunableExtractor, network: nn.Module, device: torch.device, generator: torch.Generator
    ) -> None:
        was_training = network.training
        network.eval()
        features = [t.float() for t in extractor.forward_features(self.images.to(device))]
        network.train(was_training)  # the training loop sets its own BatchNorm mode before each batch
        self.scorer.prepare(features, generator)


@torch.no_grad()
def _normal_features(
    extractor: FinetunableExtractor, normals: torch.Tensor, device: torch.device
) -> list[torch.Tensor]:
    """Every training normal's features through the final network: what the heads are calibrated on, as the
    base and AHL trainers calibrate them on the frozen features."""
    parts = [
        [t.float() for t in extractor.forward_features(normals[i : i + 64].to(device))]
        for i in range(0, len(normals), 64)
    ]
    return [torch.cat(scale) for scale in zip(*parts, strict=True)]


def finetune_backbone(
    extractor: FeatureExtractor,
    scorer: ScorerModule,
    loss: Loss,
    images: torch.Tensor | Callable[[], torch.Tensor],
    labels: torch.Tensor,
    options: FinetuneOptions | None = None,
    *,
    seed: int,
    device: torch.device | str = "cpu",
    cache: FeatureCache | None = None,
    cache_identity: str | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """Train ``extractor``'s network and ``scorer`` together on labelled images, in place.

    ``images`` are ``N×3×S×S`` in [0, 1] with ``labels`` 0 (normal), 1 (seen)
    or 2 (pseudo anomaly); a callable that returns them is only called when
    the cache cannot answer (loading and corrupting images is not free).
    Afterwards the network is frozen in eval mode, the extractor's
    fingerprint names the new weights, and the scorer is in eval mode on
    ``device``. With a ``cache`` and a ``cache_identity`` (the images'
    and options' identity) a repeat call loads the trained weights instead.
    Returns ``{"epochs": [{"epoch", "loss", "lr", "backbone_lr"}], "cached",
    "seconds", "weights"}``.
    """
    options = options or FinetuneOptions()
    ft = require_finetunable(extractor)
    device = torch.device(device)
    labels = labels.cpu().long()
    if int((labels == 0).sum()) < 1:
        raise DataError("fine-tuning needs training normals (label 0)")
    if int((labels != 0).sum()) == 0:
        raise DataError(
            "fine-tuning needs at least one labelled anomaly (y=1) or pseudo anomaly; got only normals. "
            "Label some anomalies, or enable a pseudo-anomaly generator"
        )
    network = ft.trainable_module()
    extractor.to(device)
    scorer.to(device)
    started = time.perf_counter()

    key = None
    if cache is not None and cache_identity is not None:
        key = cache_key(CACHE_VERSION, extractor.fingerprint(), cache_identity, options.model_dump_json(), int(seed))
        hit = _load_cached(cache, key, network, scorer)
        if hit is not None:
            network.eval()
            scorer.eval()
            fingerprint = weights_fingerprint(network)
            ft.mark_finetuned(fingerprint)
            return {"epochs": hit, "cached": True, "seconds": time.perf_counter() - started, "weights": fingerprint}

    images = images() if callable(images) else images
    if images.dim() != 4 or images.shape[0] != labels.shape[0]:
        raise DataError(
            f"fine-tuning needs N×3×S×S images with one label each, got {tuple(images.shape)} and {len(labels)}"
        )
    generator = torch.Generator().manual_seed(int(seed))
    references = _References(scorer, images[labels == 0], generator)
    references.update(ft, network, device, generator)
    history = _train(ft, network, scorer, loss, images, labels, options, references, generator, device, progress)
    references.update(ft, network, device, generator)
    network.eval()
    scorer.eval()
    calibrate_scorer(scorer, _normal_features(ft, images[labels == 0], device))
    fingerprint = weights_fingerprint(network)
    ft.mark_finetuned(fingerprint)
    if key is not None and cache is not None:
        losses = torch.tensor([[r["loss"], r["lr"], r["backbone_lr"]] for r in history], dtype=torch.float64)
        cache.put(key, [losses, *_state_tensors(network), *_state_tensors(scorer)])
    return {"epochs": history, "cached": False, "seconds": time.perf_counter() - started, "weights": fingerprint}


def _load_cached(
    cache: FeatureCache, key: str, network: nn.Module, scorer: ScorerModule
) -> list[dict[str, Any]] | None:
    entry = cache.get(key)
    n_network, n_scorer = len(network.state_dict()), len(scorer.state_dict())
    if entry is None or len(entry) != 1 + n_network + n_scorer:
        return None
    try:
        _restore(network, entry[1 : 1 + n_network])
        _restore(scorer, entry[1 + n_network :])
    except RuntimeError:
        return None  # written by another architecture under a colliding key: recompute
    return [
        {"epoch": i + 1, "loss": float(row[0]), "lr": float(row[1]), "backbone_lr": float(row[2])}
        for i, row in enumerate(entry[0])
    ]


def _train(
    extractor: FinetunableExtractor,
    network: nn.Module,
    scorer: ScorerModule,
    loss: Loss,
    images: torch.Tensor,
    labels: torch.Tensor,
    options: FinetuneOptions,
    references: _References,
    generator: torch.Generator,
    device: torch.device,
    progress: bool,
) -> list[dict[str, Any]]:
    backbone = list(network.parameters())
    for parameter in backbone:
        parameter.requires_grad_(True)
    heads = [p for p in scorer.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(
        [{"params": heads, "lr": options.lr}, {"params": backbone, "lr": options.backbone_lr}],
        weight_decay=options.weight_decay,
    )
    schedule = torch.optim.lr_scheduler.StepLR(optimizer, step_size=options.lr_step, gamma=options.lr_gamma)
    amp = options.mixed_precision and device.type == "cuda"
    scaler = torch.amp.GradScaler(device.type, enabled=amp)
    labels_on_device = labels.to(device)
    supervision = Supervision(loss)  # no masks of the images here: a loss that declares positions gets none

    def refresh(epoch: int) -> None:
        if references.refresh_each_epoch and epoch > 0:
            references.update(extractor, network, device, generator)

    def step() -> torch.Tensor:
        index = balanced_indices(labels, options.batch_size, generator)
        if references.refresh_each_step:
            references.update(extractor, network, device, generator)
        _set_train_mode(network, options.freeze_batchnorm)
        scorer.train()
        batch = images[index].to(device)
        with torch.autocast(device.type, dtype=torch.float16, enabled=amp):
            scores = scorer(extractor.forward_features(batch))
        value = supervision({k: v.float() for k, v in scores.items()}, labels_on_device[index.to(device)], {})
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(value).backward()
        if options.grad_clip is not None:
            scaler.unscale_(optimizer)
            nn.utils.clip_grad_norm_(heads + backbone, options.grad_clip)
        scaler.step(optimizer)
        scaler.update()
        return value

    def rates() -> dict[str, float]:
        lr, backbone_lr = (group["lr"] for group in optimizer.param_groups)
        return {"lr": lr, "backbone_lr": backbone_lr}

    try:
        return run_epochs(
            options.epochs,
            options.batches_per_epoch,
            step,
            schedule,
            rates=rates,
            what="fine-tuning",
            hint=f"lower lr ({options.lr}) or backbone_lr ({options.backbone_lr})",
            device=device,
            progress=progress,
            before_epoch=refresh,
        )
    finally:
        for parameter in backbone:
            parameter.requires_grad_(False)
        network.eval()


def training_identity(
    image_ids: list[str], labels: torch.Tensor, pseudo_ids: Mapping[str, str], extra: Mapping[str, Any]
) -> str:
    """What a fine-tuning run learnt from: every image, its label, the pseudo-anomaly sets and the model."""
    return cache_key(
        *image_ids,
        labels.tolist(),
        json.dumps(dict(sorted(pseudo_ids.items()))),
        json.dumps(extra, sort_keys=True, default=str),
    )


def finetune_options_like_base(options: Mapping[str, Any], common: Mapping[str, Any], *, ahl: bool) -> dict[str, Any]:
    """``options`` of one compare variant, fine-tuning the backbone exactly as the base variant does, so the AHL
    variant reads the base's fine-tuned network back from the cache.

    ``common``: the options a compare gives every variant (its ``-o`` options and ``--epochs``); those of the
    fine-tuning stage configure it. Without AHL the base loop does not run after fine-tuning, so its options
    leave ``options`` (they are the fine-tuning's now); with AHL they stay AHL's as well.
    """
    tuned = {k: v for k, v in common.items() if k in FinetuneOptions.model_fields}
    kept = dict(options) if ahl else {k: v for k, v in options.items() if k not in TrainOptions.model_fields}
    return {**kept, "finetune_backbone": True, "finetune_options": tuned}
