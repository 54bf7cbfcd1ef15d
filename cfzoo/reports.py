"""Tables in markdown, ours beside the paper's, and the template environment of cfzoo's HTML pages."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from cfzoo.manipulations import MANIPULATIONS
from cfzoo.paper import FAMILY_IDS, FAMILY_TITLES, table1
from cfzoo.paths import printable
from cfzoo.results import AttackRow, CheckpointRow, DetectionRow, RestorationRow, Table1Cell, TprChange


def html_templates(package: str):
    """The Jinja environment of the HTML pages in ``package``'s ``templates`` folder: values autoescaped, a missing
    one an error, and every text shown by :func:`~cfzoo.paths.printable`, so a file name that is not UTF-8 or holds
    control characters is shown escaped instead of failing the page."""
    import jinja2

    def shown(value: Any) -> Any:
        return printable(value) if isinstance(value, str) else value

    return jinja2.Environment(
        loader=jinja2.PackageLoader(package, "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        finalize=shown,
    )


#: Table I's row order: the easy tasks, then the challenging ones.
TABLE1_ORDER = ("blur1.1", "jpeg70", "median7", "resize1.5", "blur0.5", "jpeg90", "median3", "resize1.01")


def table1_markdown(rows: Sequence[Table1Cell | DetectionRow | CheckpointRow], families: list[str]) -> str:
    """Table I: for each task and family, our FPR / TPR / ACC and the paper's, in percent."""
    by_key = {(row.family, row.task): row for row in rows}
    header = "| task | " + " | ".join(f"{FAMILY_TITLES[f]} FPR | TPR | ACC" for f in families) + " |"
    rule = "|---|" + "---|---|---|" * len(families)
    lines = [header, rule]
    for task in TABLE1_ORDER:
        if not any((family, task) in by_key for family in families):
            continue
        cells = []
        for family in families:
            ours = by_key.get((family, task))
            paper = table1(task, family)
            for metric in ("fpr", "tpr", "acc"):
                mine = f"{getattr(ours, metric):.2f}" if ours else "–"
                cells.append(f"{mine} ({paper[metric]:.2f})" if paper else mine)
        title = MANIPULATIONS[task].title
        group = "easy" if MANIPULATIONS[task].difficulty == "easy" else "challenging"
        lines.append(f"| {title} ({group}) | " + " | ".join(cells) + " |")
    lines.append("")
    lines.append("Each cell: ours (the paper's), percent, on patches of the test devices only.")
    return "\n".join(lines)


def reported_families(rows: Sequence[AttackRow | RestorationRow]) -> list[str]:
    """The columns with a TPR in any row of a before/after report (Tables II-V): the families in the zoo's order,
    then external models (by id) in the order they appear."""
    columns = list(dict.fromkeys(column for row in rows for column in row.tpr))
    return [family for family in FAMILY_IDS if family in columns] + [
        column for column in columns if column not in FAMILY_IDS
    ]


def column_title(column: str) -> str:
    """A report column's heading: the family's title (Bayar2016), an external model's id as it is, an ensemble's
    members joined by +."""
    return " + ".join(FAMILY_TITLES.get(part, part) for part in column.split("+"))


def before_after_header(families: list[str]) -> str:
    return " | ".join(f"{column_title(family)} before | {column_title(family)} after" for family in families)


def before_after_cells(tpr: Mapping[str, TprChange], families: list[str], bold: str | None = None) -> list[str]:
    """Two cells per family, TPR before and after, the paper's figure in brackets; the ``bold`` family's after
    value in bold (an attack's target); a dash for a family missing from this row."""
    cells = []
    for family in families:
        rates = tpr.get(family)
        if rates is None:
            cells += ["–", "–"]
            continue
        after = f"{rates.after:.2f}"
        if family == bold:
            after = f"**{after}**"
        cells += [f"{rates.before:.2f}", after + (f" ({rates.paper:.2f})" if rates.paper is not None else "")]
    return cells
