"""The family registry: every family object by name, in the order of the one family list,
:data:`cfzoo.paper.FAMILY_IDS` (which the runtime uses without importing the build side)."""

from __future__ import annotations

from cfzoo.errors import CfzooError
from cfzoo.families.base import Family
from cfzoo.families.bayar2016 import BAYAR2016
from cfzoo.families.cozzolino2017 import COZZOLINO2017
from cfzoo.families.spam import SPAM
from cfzoo.families.xception import XCEPTION
from cfzoo.paper import FAMILY_IDS

_BY_NAME = {family.name: family for family in (SPAM, BAYAR2016, COZZOLINO2017, XCEPTION)}
if set(_BY_NAME) != set(FAMILY_IDS):  # a family object for every listed family, and no other
    raise ImportError(f"the family objects {sorted(_BY_NAME)} do not match cfzoo.paper.FAMILY_IDS {list(FAMILY_IDS)}")
FAMILIES: dict[str, Family] = {name: _BY_NAME[name] for name in FAMILY_IDS}


def get_family(name: str) -> Family:
    """The family called ``name``; a one-line error naming the families otherwise."""
    if name not in FAMILIES:
        raise CfzooError(f"unknown family {name!r}; choose one of: {', '.join(FAMILIES)}")
    return FAMILIES[name]
