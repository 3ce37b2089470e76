"""Epoch-by-epoch trace of AHL(DevNet) and DevNet at M = 1: where does one labelled anomaly go wrong?

Usage::

    python -m benchmarks.m1_trace [--cases nsl_kdd/DoS:3,adbench/bottle:0] [--options '{"...": ...}']

For each validation case (``benchmarks/validation_splits.py``, training data only) it fits DevNet and
AHL(DevNet) with the detector's defaults, and records per epoch: the validation AUC-ROC of the unified
model θ_g and of each adapted base model θ_i' (the last outer step's), where the one seen anomaly
ranks among the training normals, the deviation loss's terms on the whole training set (normals' mean
|dev|, the seen anomaly's dev and hinge, the pseudo anomalies' mean hinge), the SGE weights, and how
often the one anomaly appears in the epoch's support and query batches. The base loop is traced the
same way (its model after each epoch). Rows go to ``benchmarks/results/m1_trace/<tag>.jsonl``, the
page to ``docs/benchmarks/m1_trace.md``.

Diagnostic instrumentation: the script wraps the trainer's ``MetaLearner`` and the base loop's epoch
runner for the duration of one fit (``_Recording``); the library itself is unchanged by it.
"""

from __future__ import annotations

import argparse
import json
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch
from torch.func import functional_call

import ahl_plugins.ahl.trainer as trainer_module
import ahl_plugins.training.base as base_module
from ahl_plugins.ahl import AHLOptions
from ahl_plugins.ahl.cdl import MetaLearner
from ahl_plugins.contracts import LABEL_NORMAL, LABEL_PSEUDO, LABEL_SEEN
from ahl_plugins.detector import OSADDetector
from ahl_plugins.evaluation.metrics import auc_roc
from benchmarks.harness import PAGES, RESULTS, SHARED_MACHINE, command
from benchmarks.harness import write_page as write_markdown
from benchmarks.validation_splits import validation_cases
from builtin_plugins.deviation import DeviationLoss

DEFAULT_CASES = "nsl_kdd/DoS:3,nsl_kdd/Probe:1,adbench/bottle:0"
RESULTS_FILE = RESULTS / "m1_trace" / "trace.jsonl"
PAGE = PAGES / "m1_trace.md"


class _Recording:
    """What one fit leaves behind: parameter snapshots per epoch and per-step batch counts."""

    def __init__(self, steps_per_epoch: int) -> None:
        self.steps_per_epoch = steps_per_epoch
        self.learner: MetaLearner | None = None
        self.unified: list[dict[str, torch.Tensor]] = []
        self.adapted: list[dict[str, torch.Tensor]] = []
        self.seen_in_batches: list[dict[str, float]] = []
        self.base_scorer: torch.nn.Module | None = None
        self.base_snapshots: list[dict[str, torch.Tensor]] = []
        self.train_features: list[torch.Tensor] | None = None
        self._step = 0
        self._counts = {"support_seen": 0, "query_seen": 0, "support_total": 0, "query_total": 0}


@contextmanager
def recording(steps_per_epoch: int, batches_per_epoch: int):
    """Swap in a recording MetaLearner and a recording epoch runner for one fit."""
    rec = _Recording(steps_per_epoch)

    class RecordingLearner(MetaLearner):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            rec.learner = self

        def outer_step(self, optimizer, features, batch, weights, grad_clip):  # type: ignore[override]
            result = super().outer_step(optimizer, features, batch, weights, grad_clip)
            if rec.train_features is None:
                rec.train_features = [f.detach() for f in features]
            c = rec._counts
            c["support_seen"] += int((batch.support_labels == LABEL_SEEN).sum())
            c["query_seen"] += int((batch.query_labels == LABEL_SEEN).sum())
            c["support_total"] += batch.support_labels.numel()
            c["query_total"] += batch.query_labels.numel()
            rec._step += 1
            if rec._step % rec.steps_per_epoch == 0:
                rec.unified.append({k: v.detach().clone() for k, v in self.parameters.items()})
                rec.adapted.append({k: v.clone() for k, v in result.adapted.items()})
                rec.seen_in_batches.append(dict(c))
                rec._counts = dict.fromkeys(c, 0)
            return result

    original_learner = trainer_module.MetaLearner
    original_probe = base_module.probe_heads
    original_epochs = base_module.run_epochs

    def probe(scorer, features):
        rec.base_scorer = scorer
        rec.train_features = [f.detach() for f in features]
        return original_probe(scorer, features)

    def run_epochs(epochs, batches, step, *args, **kwargs):
        calls = {"n": 0}

        def counted():
            value = step()
            calls["n"] += 1
            if calls["n"] % batches == 0 and rec.base_scorer is not None:
                rec.base_snapshots.append(
                    {k: v.detach().clone() for k, v in rec.base_scorer.named_parameters() if v.requires_grad}
                )
            return value

        return original_epochs(epochs, batches, counted, *args, **kwargs)

    trainer_module.MetaLearner = RecordingLearner  # type: ignore[misc]
    base_module.probe_heads = probe
    base_module.run_epochs = run_epochs
    try:
        yield rec
    finally:
        trainer_module.MetaLearner = original_learner  # type: ignore[misc]
        base_module.probe_heads = original_probe
        base_module.run_epochs = original_epochs


def _raw_scores(scorer: torch.nn.Module, params: dict[str, torch.Tensor], x: list[torch.Tensor]) -> torch.Tensor:
    """The ``score`` head (deviation scale, before calibration) of a parameter snapshot."""
    consts = {n: p for n, p in scorer.named_parameters() if n not in params}
    consts.update(dict(scorer.named_buffers()))
    with torch.no_grad():
        return functional_call(scorer, ({**params}, consts), (x,))["score"].float()


def _terms(loss, scores: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
    """The deviation loss's parts on every training sample: normals |dev|, the seen anomaly, pseudo anomalies."""
    dev = loss.deviation.deviation(scores.double())
    margin = loss.deviation.margin
    normal, seen, pseudo = (labels == LABEL_NORMAL), (labels == LABEL_SEEN), (labels == LABEL_PSEUDO)
    out = {
        "normal_abs_dev": float(dev[normal].abs().mean()),
        "normal_dev_p99": float(dev[normal].quantile(0.99)),
        "seen_dev": float(dev[seen].mean()),
        "seen_hinge": float(torch.clamp(margin - dev[seen], min=0).mean()),
        # where the one anomaly ranks among training normals (1.0: above every one)
        "seen_rank": float((dev[normal] < dev[seen].mean()).double().mean()),
    }
    if pseudo.any():
        out["pseudo_hinge"] = float(torch.clamp(margin - dev[pseudo], min=0).mean())
        out["pseudo_dev"] = float(dev[pseudo].mean())
    return out


def trace_case(case, options: dict[str, Any]) -> dict[str, Any]:
    """Fit DevNet and AHL(DevNet) on one case and return their epoch-by-epoch records."""
    y_val = np.asarray(case.y_val)
    out: dict[str, Any] = {"case": case.name, "seed": case.seed, "n_anomalies": case.n_anomalies, "options": options}
    with recording(5, 20) as rec:
        base = OSADDetector("devnet", seed=case.seed, **case.detector_options).fit(case.x_fit, case.y_fit)
    val = base.features(case.x_val).as_list()
    loss = DeviationLoss()  # the detector's default: margin 5, 5000 references
    fit_features = rec.train_features
    assert fit_features is not None
    y_fit = np.asarray(case.y_fit)
    # the training set as the trainers stack it: normals, the seen anomaly, then every pseudo anomaly
    n_normals, n_seen = int((y_fit == 0).sum()), int((y_fit == 1).sum())
    train_labels = torch.cat(
        [
            torch.full((n_normals,), LABEL_NORMAL),
            torch.full((n_seen,), LABEL_SEEN),
            torch.full((fit_features[0].shape[0] - n_normals - n_seen,), LABEL_PSEUDO),
        ]
    )
    base_epochs = []
    for snapshot in rec.base_snapshots:
        fit_scores = _raw_scores(base.scorer_, snapshot, fit_features)
        base_epochs.append(
            {
                "val_auc": float(auc_roc(y_val, _raw_scores(base.scorer_, snapshot, val).numpy())),
                **_terms(loss, fit_scores, train_labels),
            }
        )
    out["base"] = {"final_val_auc": float(auc_roc(y_val, base.decision_function(case.x_val))), "epochs": base_epochs}

    # outer steps per epoch as the trainer takes them (``m1_outer_steps`` at M = 1)
    steps, _ = AHLOptions(**options).outer_schedule(int((np.asarray(case.y_fit) == 1).sum()))
    with recording(steps, 20) as rec:
        ahl = OSADDetector("devnet", ahl=True, seed=case.seed, **case.detector_options, **options).fit(
            case.x_fit, case.y_fit
        )
    history = ahl.history_
    fit_features = rec.train_features
    learner = rec.learner
    assert learner is not None
    rows = torch.arange(val[0].shape[0])
    ahl_epochs = []
    for epoch, (unified, adapted, counts) in enumerate(
        zip(rec.unified, rec.adapted, rec.seen_in_batches, strict=False)
    ):
        fit_scores = _raw_scores(ahl.scorer_, unified, fit_features)
        adapted_val = learner.score_base_models(adapted, val, rows, per_task=True).numpy()
        record = history["epochs"][epoch]
        ahl_epochs.append(
            {
                "val_auc": float(auc_roc(y_val, _raw_scores(ahl.scorer_, unified, val).numpy())),
                "adapted_val_auc": [float(auc_roc(y_val, s)) for s in adapted_val],
                "adapted_mean_val_auc": float(auc_roc(y_val, adapted_val.mean(0))),
                **_terms(loss, fit_scores, train_labels),
                "weights": record["weights"],
                "query_losses": record["query_losses"],
                "support_losses": record["support_losses"],
                "inner_change": record["inner_change"],
                "seen_share_support": counts["support_seen"] / max(1, counts["support_total"]),
                "seen_share_query": counts["query_seen"] / max(1, counts["query_total"]),
                "seen_copies": counts["support_seen"] + counts["query_seen"],
            }
        )
    out["ahl"] = {
        "final_val_auc": float(auc_roc(y_val, ahl.decision_function(case.x_val))),
        "tasks": history["tasks"],
        "clustering": history["clustering"],
        "epochs": ahl_epochs,
    }
    return out


def _cases(spec: str, n_anomalies: int):
    wanted = {}
    for item in spec.split(","):
        name, seed = item.rsplit(":", 1)
        wanted[(name, int(seed))] = True
    families = tuple(sorted({name.split("/")[0] for name, _ in wanted}))
    seeds = max(seed for _, seed in wanted) + 1
    for case in validation_cases(seeds, families, n_anomalies):
        if (case.name, case.seed) in wanted:
            yield case


def _fmt(values: list[float]) -> str:
    return f"{min(values):.3f}-{max(values):.3f}"


def page_lines(traces: list[dict[str, Any]]) -> list[str]:
    lines = [
        "# AHL(DevNet) at M = 1, epoch by epoch",
        "",
        f"Generated by `{command('m1_trace')}`; do not edit by hand. Validation cases carved from training data "
        "only (`benchmarks/validation_splits.py`). Per epoch: validation AUC-ROC of DevNet's base loop, of AHL's "
        "unified model θ_g and of its T adapted base models θ_i' (the epoch's last outer step), the deviation "
        "loss's terms on the training set (dev = (s − μ_R)/σ_R; normals' mean |dev|, the one seen anomaly's dev, "
        "the pseudo anomalies' mean hinge max(0, 5 − dev)), where the seen anomaly ranks among the training normals, "
        "and the SGE/prior weights. *copies*: how many times the one anomaly sat in the epoch's support + query "
        "batches (T tasks × the epoch's outer steps).",
        "",
    ]
    for t in traces:
        tasks = t["ahl"]["tasks"]
        contents = "; ".join(
            f"task {task['index']}: S {task['support']['normals']}n/{task['support']['seen']}a/"
            f"{task['support']['pseudo']}p, Q {task['query']['normals']}n/{task['query']['seen']}a/"
            f"{task['query']['pseudo']}p"
            for task in tasks
        )
        opts = f", options {json.dumps(t['options'])}" if t["options"] else ""
        lines += [
            f"## {t['case']}, seed {t['seed']}, M = {t['n_anomalies']}{opts}",
            "",
            f"Final validation AUC-ROC: DevNet {t['base']['final_val_auc']:.3f}, AHL(DevNet) "
            f"{t['ahl']['final_val_auc']:.3f}. Tasks (n normals / a seen anomalies / p pseudo): {contents}.",
            "",
            "| epoch | base AUC | base seen dev | base normal abs dev | base pseudo hinge | AHL θ_g AUC | θ_i' AUC (min-max) "
            "| mean of θ_i' AUC | θ_g seen dev | θ_g seen rank | θ_g normal abs dev | θ_g normal dev p99 | θ_g pseudo hinge "
            "| weights (min-max) | copies |",
            "|---" * 15 + "|",
        ]
        for i, (b, a) in enumerate(zip(t["base"]["epochs"], t["ahl"]["epochs"], strict=False)):
            lines.append(
                f"| {i + 1} | {b['val_auc']:.3f} | {b['seen_dev']:.2f} | {b['normal_abs_dev']:.2f} | "
                f"{b.get('pseudo_hinge', float('nan')):.2f} | {a['val_auc']:.3f} | {_fmt(a['adapted_val_auc'])} | "
                f"{a['adapted_mean_val_auc']:.3f} | {a['seen_dev']:.2f} | {a['seen_rank']:.3f} | "
                f"{a['normal_abs_dev']:.2f} | {a['normal_dev_p99']:.2f} | {a.get('pseudo_hinge', float('nan')):.2f} | "
                f"{_fmt(a['weights'])} | {a['seen_copies']} |"
            )
        lines.append("")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", default=DEFAULT_CASES, help="name:seed,... of validation cases")
    parser.add_argument("--n-anomalies", type=int, default=1)
    parser.add_argument("--options", default="{}", help="AHL options as JSON (default: the detector's defaults)")
    parser.add_argument("--results", default=str(RESULTS_FILE))
    parser.add_argument("--page", default=str(PAGE))
    parser.add_argument("--report-only", action="store_true")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    from pathlib import Path

    path = Path(args.results)
    path.parent.mkdir(parents=True, exist_ok=True)
    traces = [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []
    done = {(t["case"], t["seed"], t["n_anomalies"], json.dumps(t["options"], sort_keys=True)) for t in traces}
    options = json.loads(args.options)
    if not args.report_only:
        for case in _cases(args.cases, args.n_anomalies):
            key = (case.name, case.seed, case.n_anomalies, json.dumps(options, sort_keys=True))
            if key in done:
                continue
            trace = trace_case(case, options)
            traces.append(trace)
            with path.open("a") as handle:
                handle.write(json.dumps(trace) + "\n")
            print(
                f"{case.name} s{case.seed}: base {trace['base']['final_val_auc']:.3f} AHL {trace['ahl']['final_val_auc']:.3f}",
                flush=True,
            )
    write_markdown(Path(args.page), page_lines(traces), machine=SHARED_MACHINE)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
