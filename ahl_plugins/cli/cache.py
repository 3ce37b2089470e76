"""``ahl cache``: where the feature cache lives, how big it is, and clearing it."""

from __future__ import annotations

import click

cache_dir_option = click.option(
    "--cache-dir", default=None, help="Cache location (default: $AHL_CACHE_DIR, else the user cache directory)."
)


@click.group()
def cache() -> None:
    """Inspect or clear the on-disk feature cache."""


@cache.command()
@cache_dir_option
def info(cache_dir: str | None) -> None:
    """Show the cache's location, entry count and size."""
    from ahl_plugins.features.cache import FeatureCache, resolve_cache_dir

    store = FeatureCache(resolve_cache_dir(cache_dir))
    click.echo(f"{resolve_cache_dir(cache_dir)}: {len(store)} entries, {store.size_bytes() / 2**20:.1f} MiB")


@cache.command()
@cache_dir_option
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def clear(cache_dir: str | None, yes: bool) -> None:
    """Delete every cached feature (they are recomputed on the next run)."""
    from ahl_plugins.features.cache import FeatureCache, resolve_cache_dir

    location = resolve_cache_dir(cache_dir)
    if not yes:
        click.confirm(f"Delete all cached features under {location}?", abort=True)
    removed = FeatureCache(location).clear()
    click.echo(f"removed {removed} cache entries from {location}")
