"""``ahl plugins``: what is installed, what it registered, what failed."""

from __future__ import annotations

import json

import click


@click.group()
def plugins() -> None:
    """Inspect installed plugins."""


@plugins.command(name="list")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option("--all", "show_all", is_flag=True, help="Include built-in plugins.")
def list_plugins(as_json: bool, show_all: bool) -> None:
    """List plugins, the components each registered, and load errors."""
    from ahl_plugins.plugins import get_manager

    manager = get_manager()
    records = sorted(manager.records.values(), key=lambda r: (not r.builtin, r.name))
    if not show_all:
        records = [r for r in records if not r.builtin]
    if as_json:
        click.echo(json.dumps([r.as_dict() for r in records], indent=2))
        return
    if not records:
        click.echo("No third-party plugins installed. Use --all to include the built-ins.")
        return
    for record in records:
        source = "built-in" if record.builtin else (record.distribution or "registered at run time")
        click.echo(f"{record.name} {record.version or ''} ({source})".replace("  ", " "))
        if record.disabled:
            click.echo("  disabled by AHL_DISABLED_PLUGINS")
            continue
        if record.error:
            click.echo(f"  ERROR: {record.error}")
            continue
        click.echo(f"  hooks: {', '.join(record.hooks) or '-'}")
        for kind, names in sorted(record.components.items()):
            click.echo(f"  {kind}: {', '.join(sorted(names))}")


from ahl_plugins.cli.plugin_tools import check_command, new_command  # noqa: E402 - attach the author tools

plugins.add_command(check_command)
plugins.add_command(new_command)
