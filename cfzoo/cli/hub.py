"""``cfzoo pull`` (models from the Hugging Face Hub, verified) and ``cfzoo publish`` (a zoo as a Hub repo)."""

from __future__ import annotations

from pathlib import Path

import typer

from cfzoo.cli.common import handle_errors, progress_bar, stdout
from cfzoo.cli.render import print_json
from cfzoo.cli.zoo import FAMILY_OPTION, TASK_OPTION
from cfzoo.zoo.hub import CHECKSUMS_FROM_REPO, plan_pull, select_models
from cfzoo.zoo.hub import publish as publish_zoo
from cfzoo.zoo.registry import user_zoo_dir

REPO_ID_HELP = (
    "Hub repo (owner/name) to pull from; default: each model's source in the registry (`cfzoo list --json` shows it)."
)
REVISION_HELP = (
    "Branch, tag or commit; default: main with --repo-id, else the registry's. A commit makes the pull reproducible."
)
ZOO_HELP = "Zoo folder (registry.json + models/) to publish; default $CFZOO_HOME/zoo, where `cfzoo export` writes."
MODEL_CARDS_HELP = (
    "Folder of model cards (README.md, <family>.md, see `cfzoo cards`); default model_cards/ of a source checkout."
)
TOKEN_HELP = "Hugging Face token for private repos and uploads; default: HF_TOKEN or a saved `hf auth login`."


@handle_errors
def pull(
    model: list[str] = typer.Argument(None, help="Model ids (<family>-<task>), e.g. spam-jpeg70 bayar2016-median7."),
    all_models: bool = typer.Option(
        False, "--all", help="Every model of the repo (with --repo-id) or of cfzoo's registry."
    ),
    family: list[str] = FAMILY_OPTION,
    task: list[str] = TASK_OPTION,
    repo_id: str = typer.Option(None, "--repo-id", help=REPO_ID_HELP),
    revision: str = typer.Option(None, "--revision", help=REVISION_HELP),
    token: str = typer.Option(None, "--token", help=TOKEN_HELP),
    as_json: bool = typer.Option(
        False, "--json", help="Print what was pulled as JSON (ids, commit, cached paths, sha256)."
    ),
) -> None:
    """Download detectors and their gradient companions from the Hugging Face Hub, verified by sha256.

    Files land in the Hugging Face cache ($HF_HOME/hub); each must match the sha256 in cfzoo's registry
    (for a model cfzoo does not know, the repo's own registry.json) or it is deleted and the pull fails.
    Afterwards every command finds the models there (`cfzoo list` shows source hub-cache).

    Examples:
      cfzoo pull xception-jpeg70
      cfzoo pull --family bayar2016 --task jpeg70 --task median7
      cfzoo pull --all --repo-id someone/their-cfzoo-models --revision v1

    HF_ENDPOINT points at a mirror, HF_HOME moves the cache; set both before running cfzoo.
    """
    model_ids = select_models(
        model or [], families=family, tasks=task, all_models=all_models, repo_id=repo_id, revision=revision, token=token
    )
    plan = plan_pull(model_ids, repo_id, revision, token=token)
    with progress_bar("pull (bytes)") as update:
        pulled = plan.run(on_progress=update)
    if as_json:
        print_json([pulled_model.to_json() for pulled_model in pulled])
        return
    for pulled_model in pulled:
        size = sum(file.size for file in pulled_model.files) / 1e6
        stdout.print(
            f"{pulled_model.entry.id}: {len(pulled_model.files)} files, {size:.2f} MB, sha256 verified; "
            f"{pulled_model.repo_id} at {pulled_model.revision} (commit {pulled_model.commit[:12]})",
            soft_wrap=True,
        )
        for file in pulled_model.files:
            if file.repaired:
                stdout.print(
                    f"  note: the cached {file.path_in_repo} did not match its sha256 and was downloaded again",
                    soft_wrap=True,
                )
        if pulled_model.checksums_from == CHECKSUMS_FROM_REPO:
            note = (
                f"cfzoo's registry does not list {pulled_model.entry.id}; checksums came from the repo's registry.json"
            )
            stdout.print(f"  note: {note}", soft_wrap=True)
    if any(pulled_model.recorded for pulled_model in pulled):
        stdout.print(f"sources recorded in {user_zoo_dir() / 'registry.json'}", soft_wrap=True)


@handle_errors
def publish(
    repo_id: str = typer.Option(
        ..., "--repo-id", help="Hub repo (owner/name) to publish to; created if it does not exist."
    ),
    model: list[str] = typer.Argument(None, help="Model ids to publish; default: every model in the zoo."),
    zoo: Path = typer.Option(None, "--zoo", help=ZOO_HELP),
    model_cards: Path = typer.Option(None, "--model-cards", help=MODEL_CARDS_HELP),
    out: Path = typer.Option(
        None, "--out", help="Also write the laid-out repo folder here (must not exist or be empty)."
    ),
    dry_run: bool = typer.Option(False, "--dry-run", help="Upload nothing; list the files, sizes and sha256."),
    token: str = typer.Option(None, "--token", help=TOKEN_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print the repo's files and the outcome as JSON."),
) -> None:
    """Publish exported models as a Hugging Face Hub repo that `cfzoo pull --repo-id` can pull from.

    The repo gets registry.json (the published models, sha256, metrics, Hub source = this repo),
    models/<id>.onnx and models/<id>.grad.onnx, README.md and model_cards/*.md. Every file is checked
    against the zoo's registry first. Without a token this is a dry run.

    Examples:
      cfzoo publish --repo-id me/cfzoo-detectors --dry-run
      cfzoo publish --repo-id me/cfzoo-detectors spam-jpeg70 --out /tmp/repo --dry-run
      HF_TOKEN=hf_... cfzoo publish --repo-id me/cfzoo-detectors
    """
    from cfzoo.cards.model_cards import zoo_card

    result = publish_zoo(
        repo_id,
        zoo,
        model or None,
        token=token,
        dry_run=dry_run,
        out_dir=out,
        model_cards_dir=model_cards,
        zoo_card=zoo_card,
    )
    if as_json:
        print_json(result.to_json())
        return
    width = max(len(file.path_in_repo) for file in result.publication.files)
    for file in result.publication.files:
        stdout.print(f"{file.path_in_repo:<{width}}  {file.size:>11,d} B  sha256 {file.sha256}", soft_wrap=True)
    total = f"{len(result.publication.files)} files, {result.publication.size / 1e6:.2f} MB"
    if result.uploaded:
        stdout.print(f"{repo_id}: {total} {result.reason}; {result.commit_url}", soft_wrap=True)
    else:
        stdout.print(f"{repo_id}: {total} would be uploaded; nothing was ({result.reason})", soft_wrap=True)
    if result.folder is not None:
        stdout.print(f"laid out in {result.folder}", soft_wrap=True)
