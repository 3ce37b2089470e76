"""Parsing repeated ``KEY=VALUE`` options shared by several commands."""

from __future__ import annotations

import json
from typing import Any

import click


def parse_key_values(values: tuple[str, ...], flag: str) -> dict[str, Any]:
    """``("epochs=5", "name=x")`` -> ``{"epochs": 5, "name": "x"}``; values are JSON when they parse."""
    parsed: dict[str, Any] = {}
    for item in values:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise click.BadParameter(f"expected KEY=VALUE, got {item!r}", param_hint=flag)
        try:
            parsed[key.strip()] = json.loads(raw)
        except json.JSONDecodeError:
            parsed[key.strip()] = raw
    return parsed


option_flag = click.option(
    "-o",
    "--option",
    "options",
    multiple=True,
    metavar="KEY=VALUE",
    help="Detector, trainer, scorer or loss option (repeatable), e.g. -o epochs=10. See --show-options.",
)
data_option_flag = click.option(
    "--data-option",
    "data_options",
    multiple=True,
    metavar="KEY=VALUE",
    help="Option for the data loader (repeatable), e.g. --data-option label_column=target.",
)
