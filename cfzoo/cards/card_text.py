"""What the detector cards (:mod:`cfzoo.cards.model_cards`) and the restorer card (:mod:`cfzoo.cards.restorer_card`)
share: the one renderer of their Jinja templates (``cfzoo/cards/templates``) into a huggingface_hub ModelCard, and
text helpers for registry entries whose ``training`` holds a training record."""

from __future__ import annotations

import functools
import json
from collections.abc import Iterable

import jinja2
from huggingface_hub import CardData, ModelCard


@functools.cache
def _templates() -> jinja2.Environment:
    environment = jinja2.Environment(
        loader=jinja2.PackageLoader("cfzoo.cards", "templates"),
        undefined=jinja2.StrictUndefined,  # a misspelt field fails, it is not an empty string
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        autoescape=False,  # markdown, not HTML
    )
    environment.filters["code"] = lambda value: f"`{value}`"
    return environment


def render_card(template: str, card_data: CardData, **fields) -> str:
    """The model card ``template`` (a file in ``cfzoo/cards/templates``) renders with the front matter of
    ``card_data`` and ``fields``, checked by parsing it as a huggingface_hub ModelCard."""
    text = _templates().get_template(template).render(card_data=card_data.to_yaml(), **fields)
    ModelCard(text, ignore_metadata_errors=False)  # the front matter must read back as card metadata
    return text


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
