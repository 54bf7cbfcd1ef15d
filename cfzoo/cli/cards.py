"""``cfzoo cards``: Hugging Face model cards, one per detector family and one for the GAN restorers, from the zoo registries."""

from __future__ import annotations

from pathlib import Path

import typer

from cfzoo.cli.common import handle_errors, stdout
from cfzoo.cli.render import print_json
from cfzoo.cli.zoo import FAMILY_OPTION
from cfzoo.zoo.conclusions import ConclusionRegistry
from cfzoo.zoo.registry import Registry
from cfzoo.zoo.restorers import RestorerRegistry, Zoo


@handle_errors
def cards(
    out: Path = typer.Option(
        Path("model_cards"), "--out", "-o", help="Folder to write <family>.md and restorers.md into."
    ),
    family: list[str] = FAMILY_OPTION,
    zoo: Path = typer.Option(
        None,
        "--zoo",
        help="Describe the models of this zoo folder's registry.json and restorers.json only (default: every model cfzoo knows).",
    ),
    as_json: bool = typer.Option(False, "--json", help="Print what was written as JSON."),
) -> None:
    """Write a Hugging Face model card (README.md with YAML front matter) per detector family, one for the
    GAN restorers (restorers.md) and one per conclusion model (<id>.md) when the zoo has them.

    A family card covers: architecture, model contract, photos and licences, split, hyper-parameters, Table I, machine,
    limits, files. Its `model-index` holds each task's test ACC, FPR and TPR; a family missing some tasks gets a card that
    names them.

    The restorer card covers every restorer: contract and receptive radius, training, usage, limits, files. Its
    `model-index` holds each restorer's test PSNR and SSIM, restored and filtered; missing restorers are named.

    A conclusion card covers its test top-1 accuracy, calibration and confusion matrices (clean and after JPEG
    Q 90), beside the naive rule, the detectors it reads (with sha256) and when it gives no answer.
    --family selects detector families, so with it only those families' cards are written (restorers and
    conclusion models are no family).

    The same registries always give the same bytes. For the embedded zoo: cfzoo cards --zoo cfzoo/zoo/embedded
    """
    from cfzoo.cards.conclusion_card import write_conclusion_card
    from cfzoo.cards.model_cards import registry_families, write_family_cards
    from cfzoo.cards.restorer_card import restorer_card, write_restorer_card

    registry, restorers, conclusions = _registries(zoo)
    card = restorer_card(restorers) if restorers and not family else None  # rendered before anything is written
    no_families = not registry_families(registry) and (card is not None or (len(conclusions) and not family))
    written = [] if no_families else write_family_cards(out, family or None, registry)
    card_path = write_restorer_card(out, card) if card is not None else None
    conclusion_cards = [] if family else [(entry, write_conclusion_card(out, entry)) for entry in conclusions]
    if as_json:
        items = [
            {
                "card": detector_card.family,
                "family": detector_card.family,
                "path": str(path),
                "models": list(detector_card.models),
                "missing_tasks": list(detector_card.missing_tasks),
            }
            for detector_card, path in written
        ]
        if card is not None:
            items.append(
                {
                    "card": "restorers",
                    "path": str(card_path),
                    "models": list(card.models),
                    "missing_restorers": list(card.missing),
                }
            )
        items += [{"card": entry.id, "path": str(path), "models": [entry.id]} for entry, path in conclusion_cards]
        print_json(items)
        return
    for detector_card, path in written:
        missing = f"; missing: {', '.join(detector_card.missing_tasks)}" if detector_card.missing_tasks else ""
        stdout.print(f"{path}: {len(detector_card.models)} models{missing}", soft_wrap=True, highlight=False)
    if card is not None:
        missing = f"; missing: {', '.join(card.missing)}" if card.missing else ""
        stdout.print(f"{card_path}: {len(card.models)} restorers{missing}", soft_wrap=True, highlight=False)
    for entry, path in conclusion_cards:
        stdout.print(f"{path}: conclusion model {entry.id} v{entry.version}", soft_wrap=True, highlight=False)


def _registries(zoo: Path | None) -> tuple[Registry, RestorerRegistry, ConclusionRegistry]:
    """The detector, restorer and conclusion registries of ``zoo`` (some may be absent, not all), else every model
    cfzoo knows."""
    found = Zoo.load() if zoo is None else Zoo.in_folder(zoo)
    return found.detectors, found.restorers, found.conclusions
