"""The family registry: every family object by name, in the order tables list them."""

from __future__ import annotations

from cfzoo.errors import CfzooError
from cfzoo.families.base import Family
from cfzoo.families.bayar2016 import BAYAR2016
from cfzoo.families.cozzolino2017 import COZZOLINO2017
from cfzoo.families.spam import SPAM
from cfzoo.families.xception import XCEPTION

FAMILIES: dict[str, Family] = {family.name: family for family in (SPAM, BAYAR2016, COZZOLINO2017, XCEPTION)}


def get_family(name: str) -> Family:
    """The family called ``name``; a one-line error naming the families otherwise."""
    if name not in FAMILIES:
        raise CfzooError(f"unknown family {name!r}; choose one of: {', '.join(FAMILIES)}")
    return FAMILIES[name]
