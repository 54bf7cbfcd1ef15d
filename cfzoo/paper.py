"""The paper's published figures (Tables I-V), keyed by cfzoo's task and family ids.

A copy ships with cfzoo (``paper_tables.json``) so reports can print the paper beside our numbers.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

FAMILY_TITLES = {"spam": "SPAM+SVM", "bayar2016": "Bayar2016", "cozzolino2017": "Cozzolino2017", "xception": "Xception"}
#: The detector families, in the order tables list them.
FAMILY_IDS = tuple(FAMILY_TITLES)
#: The paper's tables of FGSM (eps = 1) transfer, by target family, and the number of each in the paper.
PAPER_TABLES = {
    "bayar2016": "table2_fgsm_eps1_target_bayar2016",
    "cozzolino2017": "table3_fgsm_eps1_target_cozzolino2017",
    "xception": "table4_fgsm_eps1_target_xception",
}
PAPER_NUMBERS = {"bayar2016": "II", "cozzolino2017": "III", "xception": "IV"}


@functools.cache
def paper_tables() -> dict:
    return json.loads((Path(__file__).with_name("paper_tables.json")).read_text())


def table1(task: str, family: str) -> dict[str, float] | None:
    """The paper's {"fpr", "tpr", "acc"} for a task and family, or None if it has none."""
    return paper_tables()["table1_detection"]["by_task"].get(task, {}).get(family)
