"""Pseudo-anomaly generator checks: output, mask, determinism."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from ahl_plugins.plugins import PluginManager
from ahl_plugins.seeding import seeded
from ahl_plugins.testing.common import (
    IMAGE_SIZE_FOR_GENERATORS,
    VECTOR_DIM,
    ContractReport,
    all_finite,
    describe,
    make_generator,
    open_check,
)


def check_generator(
    name: str,
    manager: PluginManager | None = None,
    *,
    options: Mapping[str, Any] | None = None,
    image_size: int = IMAGE_SIZE_FOR_GENERATORS,
    seed: int = 0,
    device: str | torch.device = "cpu",
) -> ContractReport:
    """Check a registered pseudo-anomaly generator on images or vectors (its ``domain``)."""
    __tracebackhide__ = True
    manager, entry, checker, opts = open_check(manager, "pseudo_anomaly_generators", name, options, "generator.build")
    device = torch.device(device)
    with checker.guard("generator.build", "factory(options)"):
        generator_obj = entry.build(options=opts)
    if not callable(getattr(generator_obj, "generate", None)):
        raise checker.fail(
            "generator.build", f"the factory returned {describe(generator_obj)}, which has no generate()"
        )
    domain = getattr(generator_obj, "domain", None)
    if domain not in ("image", "vector"):
        raise checker.fail("generator.build", f"domain must be 'image' or 'vector', got {domain!r}")
    if hasattr(generator_obj, "fingerprint"):
        with checker.guard("generator.build", "fingerprint()"):
            fingerprint = generator_obj.fingerprint()
        if not isinstance(fingerprint, str) or not fingerprint:
            raise checker.fail(
                "generator.build", f"fingerprint() returned {fingerprint!r}; expected a non-empty string"
            )
    checker.ok("generator.build")

    data = make_generator(seed, torch.device("cpu"))
    mask_shape: tuple[int, ...]
    if domain == "image":
        x = torch.rand(4, 3, image_size, image_size, generator=data).to(device)
        pool = torch.rand(6, 3, image_size, image_size, generator=data).to(device)
        mask_shape = (4, 1, image_size, image_size)
    else:
        x = torch.randn(4, VECTOR_DIM, generator=data).to(device)
        pool = torch.randn(8, VECTOR_DIM, generator=data).to(device)
        mask_shape = (4, VECTOR_DIM)
    x_copy, pool_copy = x.clone(), pool.clone()

    def generate(global_seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        with seeded(global_seed, device), checker.guard("generator.output", "generate(x, pool, generator)"):
            result = generator_obj.generate(x, pool, make_generator(seed, device))
        if not isinstance(result, tuple) or len(result) != 2:
            raise checker.fail("generator.output", f"generate returned {describe(result)}; expected (anomalies, mask)")
        return result

    out, mask = generate(1)
    if not isinstance(out, torch.Tensor) or out.shape != x.shape or out.dtype != x.dtype:
        raise checker.fail("generator.output", f"anomalies are {describe(out)}; expected {describe(x)} like the input")
    if not all_finite(out):
        raise checker.fail("generator.output", "anomalies have non-finite values")
    if domain == "image" and (float(out.min()) < -1e-6 or float(out.max()) > 1 + 1e-6):
        raise checker.fail(
            "generator.output",
            f"image anomalies range over [{float(out.min()):.3g}, {float(out.max()):.3g}]; they must stay in [0, 1] "
            "(extractors normalise afterwards)",
        )
    if not isinstance(mask, torch.Tensor) or tuple(mask.shape) != mask_shape or mask.dtype != torch.bool:
        raise checker.fail(
            "generator.output", f"mask is {describe(mask)}; expected a torch.bool tensor of shape {mask_shape}"
        )
    checker.ok("generator.output")

    differs = (out != x).any(dim=1, keepdim=True) if domain == "image" else out != x
    outside = differs & ~mask
    if bool(outside.any()):
        raise checker.fail(
            "generator.mask",
            f"the output differs from x at {int(outside.sum())} position(s) where mask is false; mask must be true "
            "wherever the output changed",
        )
    unchanged = [i for i in range(len(x)) if not bool(differs[i].any())]
    if unchanged:
        raise checker.fail(
            "generator.mask", f"sample(s) {unchanged} came back unchanged; a pseudo anomaly must differ from its normal"
        )
    checker.ok("generator.mask")

    if not torch.equal(x, x_copy) or not torch.equal(pool, pool_copy):
        raise checker.fail("generator.determinism", "generate modified x or pool in place; work on copies")
    out2, mask2 = generate(2)
    if not (torch.equal(out, out2) and torch.equal(mask, mask2)):
        raise checker.fail(
            "generator.determinism",
            "the same seeded generator gave different anomalies under another global RNG state; draw every random "
            "number from the generator argument (torch.rand(..., generator=generator))",
        )
    checker.ok("generator.determinism")
    return checker.report
