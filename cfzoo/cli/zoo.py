"""``cfzoo list`` (what the zoo holds and where) and ``cfzoo export`` (checkpoints -> ONNX zoo entries)."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from cfzoo.cli.common import handle_errors, progress_bar, print_json, stdout
from cfzoo.errors import CfzooError
from cfzoo.manipulations import TASK_IDS
from cfzoo.paths import default_checkpoint_dir
from cfzoo.zoo.registry import FAMILY_IDS, load_registry, user_zoo_dir
from cfzoo.zoo.restorers import load_restorer_registry
from cfzoo.zoo.resolve import available_sources

FAMILY_OPTION = typer.Option([], "--family", "-f", help=f"Only these families (repeatable): {', '.join(FAMILY_IDS)}.")
TASK_OPTION = typer.Option([], "--task", "-t", help=f"Only these tasks (repeatable): {', '.join(TASK_IDS)}.")


@handle_errors
def list_models(
    family: list[str] = FAMILY_OPTION,
    task: list[str] = TASK_OPTION,
    available: bool = typer.Option(False, "--available", help="Only models whose files are on this machine."),
    as_json: bool = typer.Option(False, "--json", help="Print the models as JSON."),
) -> None:
    """List the zoo's models: family, task, test accuracy, and where each one's files are.

    Sources, in the order they are used: user (exported or pulled into $CFZOO_HOME/zoo), hub-cache
    (downloaded by `cfzoo pull`), embedded (shipped inside the package). A model with no source can be
    pulled (`cfzoo pull ID`) or trained and exported.
    """
    registry = load_registry()
    for problem in registry.problems + load_restorer_registry().problems:  # the user zoo's invalid entries, left out
        typer.echo(f"note: {problem}; left out (fix or delete that entry)", err=True)
    entries = registry.select(family or None, task or None)
    rows = []
    for entry in entries:
        gradient_sources = available_sources(entry, "gradient")
        sources = [source for source in available_sources(entry) if source in gradient_sources]
        if available and not sources:
            continue
        rows.append({
            "id": entry.id, "family": entry.family, "task": entry.task, "test_acc": entry.test_accuracy,
            "available": bool(sources), "sources": sources,
            "hub": None if entry.hub is None else {"repo_id": entry.hub.repo_id, "revision": entry.hub.revision},
            "size_bytes": sum(file.size for file in entry.files.values()),
        })
    if as_json:
        print_json(rows)
        return
    table = Table(title=f"cfzoo models: {sum(row['available'] for row in rows)} of {len(rows)} available here")
    for column in ("model", "family", "task", "test ACC %", "size MB", "available from"):
        table.add_column(column, justify="right" if column in ("test ACC %", "size MB") else "left")
    for row in rows:
        accuracy = "-" if row["test_acc"] is None else f"{row['test_acc']:.2f}"
        where = ", ".join(row["sources"]) or (f"cfzoo pull {row['id']}" if row["hub"] else "train + export")
        table.add_row(row["id"], row["family"], row["task"], accuracy, f"{row['size_bytes'] / 1e6:.2f}", where)
    stdout.print(table)


@handle_errors
def export(
    model: list[str] = typer.Argument(None, help="Model ids (<family>-<task>) to export; default: every checkpoint found."),
    checkpoints: Path = typer.Option(None, "--checkpoints", help="Folder of `cfzoo train` checkpoints (default $CFZOO_HOME/checkpoints)."),
    zoo: Path = typer.Option(None, "--zoo", help="Zoo folder to export into (default $CFZOO_HOME/zoo, which cfzoo uses first)."),
    as_json: bool = typer.Option(False, "--json", help="Print the registry entries as JSON."),
) -> None:
    """Export trained checkpoints to ONNX (detector + gradient companion) and register them in a zoo.

    Needs the `train` extra. Example: cfzoo export xception-jpeg70 --checkpoints ~/.cfzoo/checkpoints
    """
    from cfzoo.export.onnx_export import require_export_extra
    from cfzoo.export.zoo_writer import export_to_zoo

    require_export_extra()
    checkpoints = checkpoints or default_checkpoint_dir()
    zoo = zoo or user_zoo_dir()
    model_ids = list(dict.fromkeys(model or [])) or sorted(
        path.stem for path in checkpoints.glob("*.json") if path.with_suffix(".safetensors").exists()
    )
    if not model_ids:
        raise CfzooError(f"no checkpoints in {checkpoints}; train some with `cfzoo train DATA -f FAMILY -t TASK`")
    with progress_bar("export") as update:
        registry = export_to_zoo(checkpoints, model_ids, zoo, on_model=lambda model_id, done, total: update(done, total))
    exported = [registry.get(model_id) for model_id in model_ids]
    if as_json:
        print_json([entry.to_json() for entry in exported])
        return
    for entry in exported:
        size = sum(file.size for file in entry.files.values()) / 1e6
        stdout.print(f"{entry.id}: {', '.join(file.name for file in entry.files.values())} ({size:.2f} MB)", soft_wrap=True)
    stdout.print(f"zoo: {zoo}", soft_wrap=True)
