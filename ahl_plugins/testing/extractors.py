"""Feature-extractor checks: spec, output shapes, fingerprint, frozen behaviour."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from ahl_plugins.contracts import FeatureSpec
from ahl_plugins.plugins import PluginManager
from ahl_plugins.seeding import seeded
from ahl_plugins.testing.common import (
    ATOL,
    RTOL,
    VECTOR_DIM,
    ContractReport,
    all_finite,
    describe,
    make_generator,
    max_diff,
    open_check,
)


def check_extractor(
    name: str,
    manager: PluginManager | None = None,
    *,
    options: Mapping[str, Any] | None = None,
    batch_size: int = 3,
    seed: int = 0,
    device: str | torch.device = "cpu",
) -> ContractReport:
    """Check a registered feature extractor on a small batch of its input kind."""
    __tracebackhide__ = True
    manager, entry, checker, opts = open_check(manager, "feature_extractors", name, options, "extractor.build")
    device = torch.device(device)

    def build() -> Any:
        with checker.guard("extractor.build", "factory(options)"), seeded(seed, device):
            extractor = entry.build(options=opts)
        missing = [
            m
            for m in ("extract", "fingerprint", "spec")
            if not hasattr(type(extractor), m) and not hasattr(extractor, m)
        ]
        if missing:
            raise checker.fail(
                "extractor.build",
                f"the factory returned {describe(extractor)}, which lacks {missing}; subclass FeatureExtractor",
            )
        kind = getattr(extractor, "input_kind", None)
        if kind not in ("image", "vector"):
            raise checker.fail("extractor.build", f"input_kind must be 'image' or 'vector', got {kind!r}")
        if kind == "image" and not (isinstance(extractor.image_size, int) and extractor.image_size > 0):
            raise checker.fail(
                "extractor.build", f"an image extractor needs a positive int image_size, got {extractor.image_size!r}"
            )
        with checker.guard("extractor.build", ".to(device)"):
            moved = extractor.to(device)
        return moved if moved is not None else extractor

    extractor = build()
    checker.ok("extractor.build")
    data = make_generator(seed, torch.device("cpu"))
    if extractor.input_kind == "image":
        size = extractor.image_size
        train = torch.rand(4, 3, size, size, generator=data).to(device)
        batch = torch.rand(batch_size, 3, size, size, generator=data).to(device)
    else:
        train = torch.randn(16, VECTOR_DIM, generator=data).to(device)
        batch = torch.randn(batch_size, VECTOR_DIM, generator=data).to(device)

    def fitted(extractor: Any) -> FeatureSpec:
        with checker.guard("extractor.spec", "fit(training inputs)"):
            extractor.fit(train.clone())
        with checker.guard("extractor.spec", "reading spec"):
            spec = extractor.spec
        if not isinstance(spec, FeatureSpec):
            raise checker.fail("extractor.spec", f"spec is {describe(spec)}, not an ahl_plugins.FeatureSpec")
        return spec

    spec = fitted(extractor)
    checker.ok("extractor.spec")

    def extract(extractor: Any, inputs: torch.Tensor) -> list[torch.Tensor]:
        with torch.no_grad(), checker.guard("extractor.output", f"extract({describe(inputs)})"):
            return extractor.extract(inputs)

    original = batch.clone()
    features = extract(extractor, batch)
    if not isinstance(features, (list, tuple)) or len(features) != spec.n_scales:
        raise checker.fail(
            "extractor.output",
            f"extract returned {describe(features)}; expected a list of {spec.n_scales} tensors (one per scale)",
        )
    for i, (f, channels) in enumerate(zip(features, spec.channels, strict=True)):
        dims = 4 if spec.kind == "map" else 2
        if not isinstance(f, torch.Tensor) or f.dim() != dims or f.shape[0] != batch_size or f.shape[1] != channels:
            expected = f"{batch_size}×{channels}×H×W" if dims == 4 else f"{batch_size}×{channels}"
            raise checker.fail(
                "extractor.output", f"scale {i} is {describe(f)}; spec says {spec}, so expected {expected}"
            )
        if not f.is_floating_point() or not all_finite(f):
            raise checker.fail(
                "extractor.output", f"scale {i} must be finite floats, got {f.dtype} with non-finite values"
            )
    checker.ok("extractor.output")

    with checker.guard("extractor.fingerprint", "fingerprint()"):
        prints = (extractor.fingerprint(), extractor.fingerprint())
    if not isinstance(prints[0], str) or not prints[0]:
        raise checker.fail(
            "extractor.fingerprint", f"fingerprint() returned {prints[0]!r}; expected a non-empty string"
        )
    if prints[0] != prints[1]:
        raise checker.fail(
            "extractor.fingerprint", f"fingerprint() changed between two calls: {prints[0]!r} then {prints[1]!r}"
        )
    twin = build()
    fitted(twin)
    with checker.guard("extractor.fingerprint", "fingerprint() of a second build"):
        twin_print = twin.fingerprint()
    twin_features = extract(twin, batch)
    same = all(torch.allclose(a, b, rtol=RTOL, atol=ATOL) for a, b in zip(features, twin_features, strict=True))
    if twin_print == prints[0] and not same:
        raise checker.fail(
            "extractor.fingerprint",
            "two builds with the same options and seed have the same fingerprint but give different features; "
            "the feature cache would serve wrong features. Put everything that changes the output in the fingerprint",
        )
    if twin_print != prints[0] and same:
        raise checker.fail(
            "extractor.fingerprint",
            f"two identical builds have different fingerprints ({prints[0]!r}, {twin_print!r}); the cache would never "
            "hit. Build the fingerprint from the weights' identity and settings, not from object ids or times",
        )
    checker.ok("extractor.fingerprint")

    if not torch.equal(batch, original):
        raise checker.fail("extractor.frozen", "extract modified its input batch in place")
    again = extract(extractor, batch)
    if not all(torch.allclose(a, b, rtol=RTOL, atol=ATOL) for a, b in zip(features, again, strict=True)):
        raise checker.fail(
            "extractor.frozen",
            "extracting the same batch twice gave different features (dropout or train-mode BatchNorm?)",
        )
    alone = extract(extractor, batch[-1:])
    for i, (a, b) in enumerate(zip(features, alone, strict=True)):
        if not torch.allclose(a[-1:], b, rtol=1e-3, atol=1e-4):
            raise checker.fail(
                "extractor.frozen",
                f"scale {i}: a sample's features differ when extracted alone and within a batch (max |diff| "
                f"{max_diff(a[-1:], b):.3g}); put the backbone in eval mode (BatchNorm running statistics)",
            )
    checker.ok("extractor.frozen")
    return checker.report
