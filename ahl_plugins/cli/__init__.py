"""The ``ahl`` command line. Subcommands import torch only when they run."""

from __future__ import annotations

import click

from ahl_plugins import __version__
from ahl_plugins.cli.cache import cache
from ahl_plugins.cli.compare import compare, demo
from ahl_plugins.cli.fit import fit
from ahl_plugins.cli.plugins import plugins
from ahl_plugins.cli.report import report
from ahl_plugins.cli.score import score


def _print_version(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    if not value or ctx.resilient_parsing:
        return
    from ahl_plugins.plugins import get_manager

    click.echo(f"ahl-plugins {__version__}")
    manager = get_manager()
    for record in sorted(manager.records.values(), key=lambda r: (not r.builtin, r.name)):
        state = "disabled" if record.disabled else ("FAILED" if record.error else "ok")
        version = record.version or "?"
        click.echo(f"  {record.name} {version} [{state}]")
    ctx.exit()


class AHLGroup(click.Group):
    """Turns the library's own errors into one readable line instead of a traceback."""

    def invoke(self, ctx: click.Context):
        from ahl_plugins.errors import AHLError

        try:
            return super().invoke(ctx)
        except AHLError as exc:
            raise click.ClickException(str(exc)) from exc


@click.group(cls=AHLGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--version",
    is_flag=True,
    expose_value=False,
    is_eager=True,
    callback=_print_version,
    help="Show the version and the loaded plugins, then exit.",
)
def cli() -> None:
    """Anomaly Heterogeneity Learning for open-set supervised anomaly detection.

    Wraps any registered OSAD model (DevNet, DRA, third-party plugins) with AHL.
    """


for command in (plugins, fit, score, compare, demo, report, cache):
    cli.add_command(command)
