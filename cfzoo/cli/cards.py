"""``cfzoo cards``: Hugging Face model cards, one per detector family, from the zoo registry."""

from __future__ import annotations

from pathlib import Path

import typer

from cfzoo.cli.common import handle_errors, print_json, stdout
from cfzoo.cli.zoo import FAMILY_OPTION
from cfzoo.errors import CfzooError
from cfzoo.zoo.registry import REGISTRY_NAME, Registry, load_registry


@handle_errors
def cards(
    out: Path = typer.Option(Path("model_cards"), "--out", "-o", help="Folder to write <family>.md into."),
    family: list[str] = FAMILY_OPTION,
    zoo: Path = typer.Option(
        None, "--zoo", help="Describe the models of this zoo folder's registry.json only (default: every model cfzoo knows)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print what was written as JSON."),
) -> None:
    """Write a Hugging Face model card (README.md with YAML front matter) per detector family.

    Each card covers: architecture, model contract, photos and licences, split, hyper-parameters, Table I, machine, limits, files.

    Its `model-index` holds each task's test ACC, FPR and TPR; a family missing some tasks gets a card that names them.

    The same registry always gives the same bytes. For the embedded zoo: cfzoo cards --zoo cfzoo/zoo/embedded
    """
    from cfzoo.export.model_cards import write_family_cards

    if zoo is not None:
        path = zoo / REGISTRY_NAME
        if not path.is_file():
            raise CfzooError(f"{path} does not exist; give a zoo folder written by `cfzoo export --zoo DIR`")
        registry = Registry.read(path)
    else:
        registry = load_registry()
    written = write_family_cards(out, family or None, registry)
    if as_json:
        print_json([
            {"family": card.family, "path": str(path), "models": list(card.models), "missing_tasks": list(card.missing_tasks)}
            for card, path in written
        ])
        return
    for card, path in written:
        missing = f"; missing: {', '.join(card.missing_tasks)}" if card.missing_tasks else ""
        stdout.print(f"{path}: {len(card.models)} models{missing}", soft_wrap=True, highlight=False)
