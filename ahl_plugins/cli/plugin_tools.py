"""``ahl plugins check`` and ``ahl plugins new``: tools for plugin authors.

Both import torch (through the contract kit) only when they run, so that
``ahl --help`` stays fast.
"""

from __future__ import annotations

import json
from pathlib import Path

import click

KIND_CHOICES = ("scorer", "loss", "model", "extractor", "generator", "estimator")


def _grouped(passed: list[str]) -> list[tuple[str, list[str]]]:
    """``["a [map]", "a [vector]", "b"]`` -> ``[("a", ["map", "vector"]), ("b", [])]``, first-seen order."""
    groups: dict[str, list[str]] = {}
    for label in passed:
        requirement, _, kind = label.partition(" [")
        kinds = groups.setdefault(requirement, [])
        if kind and kind.rstrip("]") not in kinds:
            kinds.append(kind.rstrip("]"))
    return list(groups.items())


@click.command(name="check")
@click.argument("name")
@click.option(
    "--kind", type=click.Choice(KIND_CHOICES), default=None, help="Check only the component of this kind called NAME."
)
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the synthetic inputs and of the builds.")
@click.option(
    "--device", default="cpu", show_default=True, help="Device to run the checks on (cpu, cuda, cuda:1, ...)."
)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def check_command(name: str, kind: str | None, seed: int, device: str, as_json: bool) -> None:
    """Run the contract kit on plugin NAME (every component it registered),
    or on the component(s) called NAME.

    Exits with status 1 when a requirement breaks; the message names the
    requirement, what was observed and how to fix it.
    """
    from ahl_plugins.errors import UnknownComponentError
    from ahl_plugins.plugins import get_manager
    from ahl_plugins.registry import KINDS_BY_KEY
    from ahl_plugins.testing import REQUIREMENTS, resolve_targets, run_checks

    manager = get_manager()
    try:
        targets = resolve_targets(name, manager, kind)
    except (UnknownComponentError, ValueError) as exc:
        raise click.ClickException(str(exc)) from None
    if not targets:
        raise click.ClickException(f"plugin {name!r} registered no components; nothing to check")
    reports = run_checks(targets, manager, seed=seed, device=device)
    failed = [r for r in reports if not r.ok]
    if as_json:
        click.echo(json.dumps([r.as_dict() for r in reports], indent=2))
    else:
        for report in reports:
            status = click.style("ok", fg="green") if report.ok else click.style("FAILED", fg="red", bold=True)
            click.echo(f"{KINDS_BY_KEY[report.kind].label} {report.name!r} (plugin {report.plugin}): {status}")
            for requirement, kinds in _grouped(report.passed):
                click.echo(f"  pass  {requirement}" + (f" [{', '.join(kinds)}]" if kinds else ""))
            for reason in report.skipped:
                click.echo(f"  skip  {reason}")
            for text in report.notes:
                click.echo(f"  note  {text}")
            if report.error is not None:
                where = f" [{report.error.feature_kind}]" if report.error.feature_kind else ""
                click.echo(
                    f"  FAIL  {report.error.requirement}{where}: {REQUIREMENTS.get(report.error.requirement, '')}"
                )
                for line in report.error.detail.splitlines():
                    click.echo(f"        {line}")
        click.echo(f"{len(reports) - len(failed)} passed, {len(failed)} failed")
    if failed:
        raise SystemExit(1)


@click.command(name="new")
@click.argument("name")
@click.option(
    "--directory",
    "-d",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("."),
    show_default=True,
    help="Where to create the package folder (ahl-plugin-NAME).",
)
@click.option("--force", is_flag=True, help="Write into an existing, non-empty folder.")
def new_command(name: str, directory: Path, force: bool) -> None:
    """Write a plugin package skeleton for NAME: pyproject with the entry point,
    a scorer, a loss, a model bundle, pydantic options and a contract test.

    It passes `ahl plugins check NAME` once installed (pip install -e FOLDER).
    """
    from ahl_plugins.plugins import get_manager
    from ahl_plugins.templates import PluginNames, TemplateError, write_plugin_package

    try:
        names = PluginNames.of(name)
    except TemplateError as exc:
        raise click.ClickException(str(exc)) from None
    manager = get_manager()
    taken = [
        f"{kind} {name!r} (plugin {manager.get(kind, name).plugin})"
        for kind in ("scorers", "losses", "models")
        if name in manager.registry(kind)
    ]
    if name in manager.records:
        taken.insert(0, f"plugin {name!r}")
    if taken and not force:
        raise click.ClickException(
            f"{', '.join(taken)} already exist(s); the new plugin's components would clash with a duplicate-name "
            "error. Choose another name (or pass --force to write the skeleton anyway)"
        )
    try:
        target = write_plugin_package(names.name, directory, force=force)
    except TemplateError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"Wrote plugin package {names.dist} to {target}")
    click.echo("Next:")
    click.echo(f"  pip install -e {target}")
    click.echo(f"  ahl plugins list                 # shows {names.name}")
    click.echo(f"  ahl plugins check {names.name}")
    click.echo(f"  pytest {target / 'tests'}")
