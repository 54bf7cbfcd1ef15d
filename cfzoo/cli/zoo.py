"""``cfzoo list`` (what the zoo holds and where) and ``cfzoo export`` (checkpoints -> ONNX zoo entries)."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from cfzoo.cli.common import handle_errors, note, progress_bar, stdout
from cfzoo.cli.render import chosen_format, format_option, json_flag, print_document, print_json
from cfzoo.errors import CfzooError
from cfzoo.manipulations import TASK_IDS
from cfzoo.ops.attacks.registry import attack_names
from cfzoo.paths import default_checkpoint_dir
from cfzoo.results import ModelList
from cfzoo.zoo.catalog import inventory
from cfzoo.zoo.registry import FAMILY_IDS, user_zoo_dir
from cfzoo.zoo.writer import REGISTER_TIMEOUT

FAMILY_OPTION = typer.Option([], "--family", "-f", help=f"Only these families (repeatable): {', '.join(FAMILY_IDS)}.")
TASK_OPTION = typer.Option([], "--task", "-t", help=f"Only these tasks (repeatable): {', '.join(TASK_IDS)}.")


@handle_errors
def list_models(
    family: list[str] = FAMILY_OPTION,
    task: list[str] = TASK_OPTION,
    available: bool = typer.Option(False, "--available", help="Only models whose files are on this machine."),
    variant: list[str] = typer.Option(
        [],
        "--variant",
        help="Only these detector variants (repeatable): standard, wild (trained through platform laundering), "
        "robust (adversarially trained); default all.",
    ),
    output_format: str = format_option("table", "json", "csv"),
    as_json: bool = json_flag(),
) -> None:
    """List the zoo's detectors (every family x task, published or not), GAN restorers and conclusion models: test accuracy, size, and where each one's files are.

    Sources, in the order they are used: user (exported or pulled into $CFZOO_HOME/zoo), hub-cache
    (downloaded by `cfzoo pull`), embedded (shipped inside the package). A model with no source can be
    pulled (`cfzoo pull ID`) or trained and exported.
    """
    output_format = chosen_format(output_format, ("table", "json", "csv"), as_json)
    models, problems = inventory(family or None, task or None, available, variant or None)
    for problem in problems:  # the user zoo's invalid entries, left out
        note(f"note: {problem}; left out (fix or delete that entry)")
    print_document(models, output_format, lambda: _print_models(models))


def _print_models(models: ModelList) -> None:
    # fits 80 columns: ids are never cut (the family is their first part; --json has it), the last column wraps
    rows = models.detectors
    registered = [row for row in rows if row.registered]
    table = Table(title=f"cfzoo detectors: {sum(row.available for row in rows)} of {len(registered)} available here")
    table.add_column("model", no_wrap=True)
    table.add_column("task", no_wrap=True)
    variants = any(row.variant not in (None, "standard") for row in rows)
    if variants:  # the id says it too; the column sorts the eye
        table.add_column("variant", no_wrap=True)
    table.add_column("test ACC %", justify="right", no_wrap=True)
    table.add_column("MB", justify="right", no_wrap=True)
    table.add_column("available from", overflow="fold")
    for row in rows:
        accuracy = "-" if row.test_acc is None else f"{row.test_acc:.2f}"
        size = "-" if row.size_bytes is None else f"{row.size_bytes / 1e6:.2f}"
        where = ", ".join(row.sources) or ("cfzoo pull" if row.hub else "train + export")
        cells = [row.id, row.task, *([row.variant or "-"] if variants else []), accuracy, size, where]
        table.add_row(*cells, style=None if row.registered else "dim")
    if any(not row.sources for row in rows):
        table.caption = (
            "not here: `cfzoo pull MODEL` fetches it from the Hub; train + export: cfzoo train DATA -f FAMILY -t TASK, "
            "then cfzoo export MODEL (dim: no such model published yet)"
        )
    stdout.print(table)
    restorers = models.restorers
    if restorers:
        restorer_table = Table(
            title=f"cfzoo GAN restorers: {sum(row.available for row in restorers)} of {len(restorers)} available here"
        )
        for column in ("restorer", "task", "MB", "available from"):
            restorer_table.add_column(
                column, justify="right" if column == "MB" else "left", no_wrap=column != "available from"
            )
        for row in restorers:
            where = ", ".join(row.sources) or "cfzoo train-restorer, then cfzoo export-restorer"
            restorer_table.add_row(row.id, row.task, f"{row.size_bytes / 1e6:.2f}", where)
        stdout.print(restorer_table)
    if models.conclusions:
        conclusion_table = Table(title="cfzoo conclusion models (detect's one conclusion per image)")
        for column in ("model", "test top-1 %", "MB", "available from"):
            conclusion_table.add_column(column, justify="left" if column in ("model", "available from") else "right")
        for row in models.conclusions:
            accuracy = "-" if row.test_acc is None else f"{row.test_acc:.1f}"
            where = ", ".join(row.sources) or "cfzoo train-conclusion DATA"
            conclusion_table.add_row(row.id, accuracy, f"{row.size_bytes / 1e6:.2f}", where)
        stdout.print(conclusion_table)


@handle_errors
def export(
    model: list[str] = typer.Argument(
        None, help="Model ids (<family>-<task>) to export; default: every checkpoint found."
    ),
    checkpoints: Path = typer.Option(
        None, "--checkpoints", help="Folder of `cfzoo train` checkpoints (default $CFZOO_HOME/checkpoints)."
    ),
    zoo: Path = typer.Option(
        None, "--zoo", help="Zoo folder to export into (default $CFZOO_HOME/zoo, which cfzoo uses first)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the registry entries as JSON."),
) -> None:
    """Export trained checkpoints to ONNX (detector + gradient companion) and register them in a zoo.

    Needs the `train` extra. Example: cfzoo export xception-jpeg70 --checkpoints ~/.cfzoo/checkpoints
    """
    from cfzoo.export.onnx_export import require_export_extra
    from cfzoo.families import export_to_zoo

    require_export_extra()
    checkpoints = checkpoints or default_checkpoint_dir()
    zoo = zoo or user_zoo_dir()
    model_ids = list(dict.fromkeys(model or [])) or sorted(
        path.stem for path in checkpoints.glob("*.json") if path.with_suffix(".safetensors").exists()
    )
    if not model_ids:
        raise CfzooError(f"no checkpoints in {checkpoints}; train some with `cfzoo train DATA -f FAMILY -t TASK`")
    with progress_bar("export") as update:
        registry = export_to_zoo(
            checkpoints, model_ids, zoo, on_model=lambda model_id, done, total: update(done, total)
        )
    exported = [registry.get(model_id) for model_id in model_ids]
    if as_json:
        print_json([entry.to_json() for entry in exported])
        return
    for entry in exported:
        size = sum(file.size for file in entry.files.values()) / 1e6
        stdout.print(
            f"{entry.id}: {', '.join(file.name for file in entry.files.values())} ({size:.2f} MB)", soft_wrap=True
        )
    stdout.print(f"zoo: {zoo}", soft_wrap=True)


@handle_errors
def register(
    path: Path | None = typer.Argument(
        None, help="The detector's .onnx file (or give --torch).", show_default=False, readable=False
    ),
    torch_factory: str | None = typer.Option(
        None,
        "--torch",
        help="FILE.py:FACTORY: a torch.nn.Module detector, made by calling FACTORY() from FILE.py (weights loaded); "
        "cfzoo exports it to ONNX itself.",
    ),
    model_id: str = typer.Option(
        ..., "--id", help="Its id in the zoo: lowercase letters, digits, '.', '_', '-' (not <family>-<task>)."
    ),
    task: str = typer.Option(..., "--task", "-t", help=f"The manipulation it detects: {', '.join(TASK_IDS)}."),
    layout: str = typer.Option(
        "NCHW", "--layout", help="Its input layout: NCHW ([N,3,128,128]) or NHWC ([N,128,128,3]); RGB."
    ),
    input_range: int = typer.Option(255, "--input-range", help="The pixel range it expects: 255 (0..255) or 1 (0..1)."),
    outputs: str = typer.Option(
        "two-logits", "--outputs", help="two-logits ([N,2]) or one-logit ([N] or [N,1]); logits, not probabilities."
    ),
    manipulated_class: int = typer.Option(
        1,
        "--manipulated-class",
        help="Which logit means manipulated (two logits: its column; one logit: 1 if positive means manipulated, 0 if pristine).",
    ),
    threshold: float = typer.Option(
        0.5, "--threshold", help="Probability of manipulated above which a patch is called manipulated."
    ),
    companion: bool = typer.Option(
        True,
        "--companion/--no-companion",
        help="Make the gradient companion that gradient attacks need (onnx2torch + autograd; the train extra).",
    ),
    timeout: float = typer.Option(
        REGISTER_TIMEOUT,
        "--timeout",
        help="Seconds the graph's checks and its companion may take (they run in a child process, killed after).",
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the registry entry as JSON."),
) -> None:
    """Add a detector cfzoo did not make to your zoo ($CFZOO_HOME/zoo), so detect, attack and the Python API use it by id.

    cfzoo wraps the graph so it follows the model contract (docs/contract.md): RGB float 0..255 [N,3,128,128] in, two
    logits (pristine, manipulated) out. Declare how yours differs with --layout, --input-range, --outputs and
    --manipulated-class; cfzoo runs it on a batch of two to check. The gradient companion is checked against finite
    differences of the detector. Nothing is written unless every check passes; a graph whose checks take more than
    --timeout seconds (a loop that never ends) is refused.

    Examples: cfzoo register mynet.onnx --id mynet --task jpeg70 --layout NHWC --input-range 1 --outputs one-logit; cfzoo register --torch mynet.py:load --id mynet --task jpeg70 (load() returns the torch module, weights loaded).
    """
    from cfzoo.export.third_party import Adapter, load_factory, register_model, register_module

    adapter = Adapter(layout=layout, input_range=input_range, outputs=outputs, manipulated_class=manipulated_class)
    if (path is None) == (torch_factory is None):
        raise CfzooError("give the detector's .onnx file or --torch FILE.py:FACTORY, one of them")
    if path is not None:
        registration = register_model(path, model_id, task, adapter, threshold, companion, timeout=timeout)
    else:
        module = load_factory(torch_factory)
        registration = register_module(
            module, model_id, task, adapter, threshold=threshold, companion=companion, timeout=timeout
        )
    if as_json:
        print_json({**registration.entry.to_json(), "companion_finite_difference_error": registration.companion_error})
        return
    files = ", ".join(file.name for file in registration.entry.files.values())
    stdout.print(f"registered {model_id} ({task}) in {user_zoo_dir()}: {files}", soft_wrap=True)
    if registration.companion_error is None:
        gradient = ", ".join(attack_names(needs_gradient=True))
        stdout.print(f"no gradient companion: gradient attacks ({gradient}) cannot target it", soft_wrap=True)
    else:
        stdout.print(
            f"gradient companion agrees with finite differences of the detector to {registration.companion_error:.1%}",
            soft_wrap=True,
        )
    stdout.print(
        f"use it: cfzoo detect IMAGE --model {model_id}; cfzoo attack IMAGE --target {model_id} -t {task} --out OUT.png",
        soft_wrap=True,
    )
