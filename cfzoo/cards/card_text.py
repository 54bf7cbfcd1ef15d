"""Text helpers shared by the detector cards (:mod:`cfzoo.cards.model_cards`) and the restorer card
(:mod:`cfzoo.cards.restorer_card`): both read registry entries whose ``training`` holds a training record."""

from __future__ import annotations

import json
from typing import Iterable


def distinct(values: Iterable) -> list:
    """The values that are not None, each once, in first-seen order."""
    return list(dict.fromkeys(value for value in values if value is not None))


def machine_text(machine: dict) -> str:
    """A training record's ``machine`` as ``CPU (2 cores)`` or ``GPU <name>``."""
    device = machine.get("device")
    if not device:
        return "not recorded"
    return "CPU" + device[3:] if device.startswith("cpu") else f"GPU {device}"


def value_text(value) -> str:
    """A hyper-parameter value as a card shows it."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (int, str)):
        return str(value)
    return json.dumps(value, sort_keys=True)


def split_of(entry) -> dict:
    """The device split recorded with a registry entry's training."""
    return entry.training.get("split", {})


def devices_text(entry, part: str) -> str:
    """The ``train`` or ``test`` devices of an entry's split, comma-separated."""
    return ", ".join(split_of(entry).get(part, [])) or "not recorded"
