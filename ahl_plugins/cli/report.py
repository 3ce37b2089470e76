"""``ahl report``: several compare directories combined into one study across data sets.

The evaluation code is imported inside the command, so ``ahl --help`` stays fast.
"""

from __future__ import annotations

from pathlib import Path

import click


@click.command()
@click.argument("directories", nargs=-1, required=True, type=click.Path(file_okay=False))
@click.option("--output", required=True, type=click.Path(file_okay=False), help="Directory for the combined report.")
@click.option(
    "--metric",
    type=click.Choice(["auc_roc", "auc_pr"]),
    default="auc_roc",
    show_default=True,
    help="The metric whose gains and ranks are combined.",
)
@click.option("--no-plots", is_flag=True, help="Skip the forest plot and the critical-difference diagram.")
def report(directories: tuple[str, ...], output: str, metric: str, no_plots: bool) -> None:
    """Combine `ahl compare` output DIRECTORIES (one per data set) into one report.

    Per model pair (AHL(m) − m, each ablation − m): the mean gain over data
    sets with its 95% interval, the Wilcoxon signed-rank test over data sets
    and how many rows help, show no detectable effect, or hurt. With three or
    more methods on every row: average ranks, the Friedman test and the
    Nemenyi critical-difference diagram. Writes summary.json, summary.md,
    plots/ and index.html into --output.
    """
    from ahl_plugins.errors import AHLError
    from ahl_plugins.evaluation.combine_report import write_report

    try:
        result = write_report(list(directories), output, metric=metric, plots=not no_plots)
    except AHLError as exc:
        raise click.ClickException(str(exc)) from None
    for pair in result["pairs"]:
        over, test = pair["over_rows"], pair["wilcoxon"]
        mean = "-" if over["mean"] is None else f"{over['mean']:+.3f}"
        span = "" if over["ci_low"] is None else f" [{over['ci_low']:+.3f}, {over['ci_high']:+.3f}]"
        p = "-" if test["p"] is None else f"{test['p']:.3g}"
        click.echo(
            f"{pair['label']}: {mean}{span} over {pair['rows']} rows ({over['verdict']}); Wilcoxon p = {p}; "
            f"rows helps / none / hurts: {pair['wins']} / {pair['ties']} / {pair['losses']}"
        )
    ranks = result["ranks"]
    if "average_ranks" in ranks:
        order = sorted(ranks["average_ranks"], key=lambda n: ranks["average_ranks"][n])
        click.echo(
            "average ranks: "
            + ", ".join(f"{n} {ranks['average_ranks'][n]:.2f}" for n in order)
            + f"; Friedman p = {ranks['friedman']['p']:.3g}, Nemenyi CD = {ranks['critical_difference']:.2f}"
        )
    else:
        click.echo(ranks.get("note", ""))
    out = Path(output)
    click.echo(f"report: {out / 'index.html'} (and summary.md, summary.json, plots/)")
