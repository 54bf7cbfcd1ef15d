"""Pulling models from, and publishing them to, the Hugging Face Hub; huggingface_hub is the only transport.

A Hub repo has the zoo layout (see :mod:`cfzoo.zoo.registry`) plus model cards::

    registry.json            the published models, their sha256 and test metrics
    models/<id>.onnx         detectors
    models/<id>.grad.onnx    gradient companions
    README.md                the repo's model card
    model_cards/<name>.md    per-family model cards, when the zoo has them

:func:`pull` downloads into the Hugging Face cache and keeps a file only when its sha256 matches the
registry; :func:`cfzoo.zoo.resolve` then finds it there. :func:`publish` lays a zoo out as such a repo and
uploads it, or only lists what it would upload.

huggingface_hub reads ``HF_ENDPOINT`` (a mirror), ``HF_HOME`` (the cache), ``HF_HUB_OFFLINE`` and
``HF_TOKEN`` when it is first imported: set them before the process starts, or pass ``endpoint`` /
``cache_dir`` / ``token`` explicitly. :func:`cfzoo.zoo.resolve` looks in the default cache only.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TypeVar

from cfzoo._version import __version__
from cfzoo.errors import CfzooError, first_line, option
from cfzoo.files import file_sha256
from cfzoo.zoo.registry import (
    FILE_KINDS,
    MODELS_FOLDER,
    REGISTRY_NAME,
    HubSource,
    ModelEntry,
    Registry,
    load_registry,
    user_registry,
    user_zoo_dir,
)

DEFAULT_REVISION = "main"
README_NAME = "README.md"
MODEL_CARDS_FOLDER = "model_cards"
#: Writes a published repo's README.md card from (repo id, published entries, family card file names).
ZooCard = Callable[[str, list[ModelEntry], list[str]], str]
CHECKSUMS_FROM_CFZOO = "cfzoo registry"
CHECKSUMS_FROM_REPO = "repo registry.json"
_T = TypeVar("_T")


# ---------------------------------------------------------------------------------------------------- pull


@dataclass(frozen=True)
class PulledFile:
    kind: str  # detector or gradient
    path_in_repo: str
    path: Path  # in the Hugging Face cache
    sha256: str
    size: int
    repaired: bool = False  # the cached copy did not match and was downloaded again


@dataclass(frozen=True)
class PulledModel:
    entry: ModelEntry  # as cfzoo knows it after the pull
    repo_id: str
    revision: str  # as asked for
    commit: str  # the commit the files came from
    checksums_from: str  # CHECKSUMS_FROM_CFZOO, or CHECKSUMS_FROM_REPO for a model cfzoo's registry does not list
    recorded: bool  # the source was written to the user zoo's registry so that resolve finds the files
    files: tuple[PulledFile, ...]

    def to_json(self) -> dict:
        return {
            "id": self.entry.id,
            "repo_id": self.repo_id,
            "revision": self.revision,
            "commit": self.commit,
            "checksums_from": self.checksums_from,
            "recorded": self.recorded,
            "files": [
                {
                    "kind": file.kind,
                    "path_in_repo": file.path_in_repo,
                    "path": str(file.path),
                    "sha256": file.sha256,
                    "size": file.size,
                    "repaired": file.repaired,
                }
                for file in self.files
            ],
        }


@dataclass(frozen=True)
class _Planned:
    entry: ModelEntry
    repo_id: str
    revision: str  # as asked for
    commit: str  # what ``revision`` pointed at when planned: every file is fetched at this one commit
    checksums_from: str


class _Hub:
    """huggingface_hub calls for one endpoint, with every failure turned into a one-line CfzooError."""

    def __init__(self, endpoint: str | None, cache_dir: str | os.PathLike[str] | None, token: str | None):
        from huggingface_hub import HfApi, constants

        self.endpoint = (endpoint or constants.ENDPOINT).rstrip("/")
        self.cache_dir, self.token = cache_dir, token
        self.api = HfApi(endpoint=self.endpoint, token=token)
        self._commits: dict[tuple[str, str], tuple[str, frozenset[str]]] = {}

    def call(self, what: str, repo_id: str, revision: str, request: Callable[[], _T]) -> _T:
        """``request()``, a Hub call about ``what`` in ``repo_id`` at ``revision``."""
        from huggingface_hub.errors import (
            EntryNotFoundError,
            GatedRepoError,
            HfHubHTTPError,
            HFValidationError,
            LocalEntryNotFoundError,
            OfflineModeIsEnabled,
            RepositoryNotFoundError,
            RevisionNotFoundError,
        )

        try:
            return request()
        except OfflineModeIsEnabled:
            raise _offline_error() from None
        except HFValidationError:
            raise CfzooError(
                f"{repo_id!r} is not a valid Hub repo id; give it as owner/name (letters, digits, '-', '_', '.')"
            ) from None
        except GatedRepoError:
            raise CfzooError(
                f"{repo_id} on {self.endpoint} is gated; accept its terms on the Hub, then set HF_TOKEN"
            ) from None
        except RevisionNotFoundError:
            raise _revision_error(repo_id, revision) from None
        except RepositoryNotFoundError:
            # Some servers (mirrors) answer "repository not found" for a missing revision too: tell them apart.
            if revision != DEFAULT_REVISION and self._repo_exists(repo_id):
                raise _revision_error(repo_id, revision) from None
            raise CfzooError(
                f"no Hub repo {repo_id} on {self.endpoint} (or it is private: set HF_TOKEN); check --repo-id and HF_ENDPOINT"
            ) from None
        except LocalEntryNotFoundError:
            raise self._unreachable(what, "no answer") from None
        except EntryNotFoundError:
            raise CfzooError(
                f"{repo_id} at revision {revision} has no {what}; choose a revision that holds it ({option('revision')})"
            ) from None
        except HfHubHTTPError as error:
            raise CfzooError(
                f"the Hub at {self.endpoint} answered an error for {what} of {repo_id} ({first_line(error)}); try again later"
            ) from None
        except _transport_errors() as error:  # the network, not cfzoo: anything else is a bug and must show as one
            raise self._unreachable(what, f"{type(error).__name__}: {first_line(error)}") from None

    def _unreachable(self, what: str, reason: str) -> CfzooError:
        return CfzooError(
            f"cannot reach the Hub at {self.endpoint} to fetch {what} ({reason}); check the network connection or HF_ENDPOINT"
        )

    def _repo_exists(self, repo_id: str) -> bool:
        from huggingface_hub.errors import HfHubHTTPError

        try:
            self.api.model_info(repo_id, revision=DEFAULT_REVISION)
        except (HfHubHTTPError, *_transport_errors()):  # "cannot tell": the caller reports the repo as missing
            return False
        return True

    def commit_and_files(self, repo_id: str, revision: str) -> tuple[str, frozenset[str]]:
        """The commit ``revision`` points at and the files of the repo at that commit."""
        key = (repo_id, revision)
        if key not in self._commits:
            info = self.call(
                "the repo's file list", repo_id, revision, lambda: self.api.model_info(repo_id, revision=revision)
            )
            self._commits[key] = info.sha, frozenset(sibling.rfilename for sibling in info.siblings or ())
        return self._commits[key]

    def download(self, repo_id: str, revision: str, path_in_repo: str, again: bool = False) -> Path:
        """The file in the Hugging Face cache; ``again`` fetches it even when the cache holds a copy."""
        from huggingface_hub import hf_hub_download

        return Path(
            self.call(
                path_in_repo,
                repo_id,
                revision,
                lambda: hf_hub_download(
                    repo_id,
                    path_in_repo,
                    revision=revision,
                    cache_dir=self.cache_dir,
                    endpoint=self.endpoint,
                    token=self.token,
                    tqdm_class=_silent_progress_bar(),
                    force_download=again,
                ),
            )
        )

    def is_cached(self, repo_id: str, commit: str, path_in_repo: str) -> bool:
        from huggingface_hub import try_to_load_from_cache

        return isinstance(try_to_load_from_cache(repo_id, path_in_repo, cache_dir=self.cache_dir, revision=commit), str)

    def registry(self, repo_id: str, revision: str) -> Registry:
        commit, files = self.commit_and_files(repo_id, revision)
        if REGISTRY_NAME not in files:
            raise CfzooError(
                f"{repo_id} at revision {revision} has no {REGISTRY_NAME}, so it is not a cfzoo zoo; check {option('repo_id')}"
            )
        return Registry.read(self.download(repo_id, commit, REGISTRY_NAME))


def repo_registry(
    repo_id: str,
    revision: str = DEFAULT_REVISION,
    *,
    endpoint: str | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    token: str | None = None,
) -> Registry:
    """The registry a Hub repo publishes at ``revision`` (downloaded into the Hugging Face cache)."""
    _require_online()
    return _Hub(endpoint, cache_dir, token).registry(repo_id, revision)


def select_models(
    model_ids: Iterable[str] = (),
    *,
    families: Iterable[str] | None = None,
    tasks: Iterable[str] | None = None,
    all_models: bool = False,
    repo_id: str | None = None,
    revision: str | None = None,
    endpoint: str | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    token: str | None = None,
) -> list[str]:
    """The ids to pull: ``model_ids`` plus, with ``all_models``/``families``/``tasks``, the matching models of
    ``repo_id``'s registry (when a repo is named) or of cfzoo's registry (those with a Hub source)."""
    chosen = list(dict.fromkeys(model_ids))
    families, tasks = list(families or []) or None, list(tasks or []) or None
    if all_models or families or tasks:
        if repo_id:
            source = repo_registry(
                repo_id, revision or DEFAULT_REVISION, endpoint=endpoint, cache_dir=cache_dir, token=token
            )
            where = f"{repo_id} at revision {revision or DEFAULT_REVISION}"
        else:
            source = Registry(entry for entry in load_registry() if entry.hub is not None)
            where = "cfzoo's registry (models with a Hub source)"
        selected = [entry.id for entry in source.select(families, tasks)]
        if not selected:
            raise CfzooError(
                f"no model in {where} matches {option('all_models', '--all')}/{option('families', '--family')}/{option('tasks', '--task')}; `cfzoo list` shows the models"
            )
        chosen += [model_id for model_id in selected if model_id not in chosen]
    if not chosen:
        raise CfzooError(
            f"name the models to pull (e.g. cfzoo pull spam-jpeg70) or select them with {option('all_models', '--all')}, {option('families', '--family')} or {option('tasks', '--task')}"
        )
    return chosen


class PullPlan:
    """The models to pull, each with its source and expected checksums, checked against the repo's file list;
    :meth:`run` downloads and verifies them."""

    def __init__(self, hub: _Hub, models: list[_Planned]):
        self._hub, self.models = hub, tuple(models)

    @property
    def total_bytes(self) -> int:
        return sum(file.size for model in self.models for file in model.entry.files.values())

    def run(self, on_progress: Callable[[int, int], None] | None = None) -> list[PulledModel]:
        """Download and verify every file; ``on_progress(bytes_done, bytes_total)`` follows the downloads."""
        done, total = 0, self.total_bytes
        if on_progress is not None:
            on_progress(done, total)
        pulled = []
        for plan in self.models:
            files = []
            for kind in FILE_KINDS:
                expected = plan.entry.file(kind)
                files.append(self._fetch_verified(plan, kind))
                done += expected.size
                if on_progress is not None:
                    on_progress(done, total)
            recorded = plan.checksums_from == CHECKSUMS_FROM_REPO or plan.entry.hub != HubSource(
                plan.repo_id, plan.revision
            )
            entry = (
                replace(plan.entry, hub=HubSource(plan.repo_id, plan.commit), embedded=False)
                if recorded
                else plan.entry
            )
            pulled.append(
                PulledModel(
                    entry, plan.repo_id, plan.revision, plan.commit, plan.checksums_from, recorded, tuple(files)
                )
            )
        recorded_entries = [model.entry for model in pulled if model.recorded]
        if recorded_entries:
            user_registry().merged(Registry(recorded_entries)).write(user_zoo_dir() / REGISTRY_NAME)
        return pulled

    def _fetch_verified(self, plan: _Planned, kind: str) -> PulledFile:
        """The file at the planned commit if its sha256 matches. A cached copy that does not match (damaged on
        this disk) is discarded and fetched once more; a fresh download that does not match is the repo's file,
        and is refused."""
        expected = plan.entry.file(kind)
        was_cached = self._hub.is_cached(plan.repo_id, plan.commit, expected.path_in_zoo)
        path = self._hub.download(plan.repo_id, plan.commit, expected.path_in_zoo)
        repaired = False
        if was_cached and file_sha256(path) != expected.sha256:
            _discard_from_cache(path)
            path, repaired = self._hub.download(plan.repo_id, plan.commit, expected.path_in_zoo, again=True), True
        actual = file_sha256(path)
        if actual != expected.sha256:
            _discard_from_cache(path)
            raise CfzooError(
                f"{expected.path_in_zoo} from {plan.repo_id} at revision {plan.revision} has sha256 {actual[:12]}..., but the "
                f"{plan.checksums_from} expects {expected.sha256[:12]}... for {plan.entry.id}; the download was deleted from the "
                "Hugging Face cache. The repo's file is not the published model: pull from another revision (--revision) or repo"
            )
        return PulledFile(kind, expected.path_in_zoo, path, actual, path.stat().st_size, repaired)


def plan_pull(
    model_ids: Iterable[str],
    repo_id: str | None = None,
    revision: str | None = None,
    *,
    endpoint: str | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    token: str | None = None,
) -> PullPlan:
    """Find each model's entry and source and check that the source holds its files; downloads nothing yet.

    The source is ``repo_id`` at ``revision`` (default ``main``), else the model's Hub source in cfzoo's
    registry. Checksums come from cfzoo's registry; for a model it does not list, from the repo's own
    ``registry.json`` at that revision.
    """
    _require_online()
    hub = _Hub(endpoint, cache_dir, token)
    known = load_registry()
    plans = []
    for model_id in dict.fromkeys(model_ids):
        entry = known.entries.get(model_id)
        if repo_id:
            source = HubSource(repo_id, revision or DEFAULT_REVISION)
        elif entry is not None and entry.hub is not None:
            source = HubSource(entry.hub.repo_id, revision or entry.hub.revision)
        elif entry is None:
            raise CfzooError(
                f"unknown model {model_id!r}; `cfzoo list` shows the models, or pass --repo-id to pull from a repo that publishes it"
            )
        else:
            raise CfzooError(
                f"model {model_id} has no Hub source in the registry; pass {option('repo_id')} (and {option('revision')}) to pull it"
            )
        checksums_from = CHECKSUMS_FROM_CFZOO
        if entry is None:
            published = hub.registry(source.repo_id, source.revision)
            if model_id not in published:
                listed = ", ".join(published.entries) or "nothing"
                raise CfzooError(
                    f"{source.repo_id} at revision {source.revision} does not publish {model_id!r}; it publishes: {listed}"
                )
            entry, checksums_from = published.get(model_id), CHECKSUMS_FROM_REPO
        commit, files = hub.commit_and_files(source.repo_id, source.revision)
        missing = [file.path_in_zoo for file in entry.files.values() if file.path_in_zoo not in files]
        if missing:
            raise CfzooError(
                f"{source.repo_id} at revision {source.revision} has no {', '.join(missing)}; "
                f"choose a revision or repo that publishes {model_id}"
            )
        plans.append(_Planned(entry, source.repo_id, source.revision, commit, checksums_from))
    return PullPlan(hub, plans)


def pull(
    model_ids: Iterable[str],
    repo_id: str | None = None,
    revision: str | None = None,
    *,
    endpoint: str | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    token: str | None = None,
    on_progress: Callable[[int, int], None] | None = None,
) -> list[PulledModel]:
    """Download each model's detector and gradient companion into the Hugging Face cache and verify them.

    Sources and checksums as :func:`plan_pull` says (``checksums_from`` in the result tells which registry
    vouched for a file). A file whose sha256 does not match is deleted from the cache and the pull fails.
    After a verified pull from a source other than the model's registered one, that source, pinned to the
    commit, is recorded in the user zoo's registry so that :func:`cfzoo.zoo.resolve` finds the files in the
    (default) cache. ``on_progress(bytes_done, bytes_total)`` follows the downloads.
    """
    return plan_pull(model_ids, repo_id, revision, endpoint=endpoint, cache_dir=cache_dir, token=token).run(on_progress)


def _discard_from_cache(path: Path) -> None:
    """Remove a cached file: its snapshot link and the blob it points to (or the file itself without symlinks)."""
    blob = path.resolve()
    path.unlink(missing_ok=True)
    if blob != path:
        blob.unlink(missing_ok=True)


@functools.cache
def _transport_errors() -> tuple[type[BaseException], ...]:
    """The exception classes of the network under huggingface_hub: sockets, and those of the HTTP clients it may
    use (httpx, or httpx2 since huggingface_hub 2.x; requests before)."""
    import importlib

    errors: list[type[BaseException]] = [OSError]
    for module, name in (("httpx", "HTTPError"), ("httpx2", "HTTPError"), ("requests", "RequestException")):
        try:
            errors.append(getattr(importlib.import_module(module), name))
        except (ImportError, AttributeError):
            continue
    return tuple(errors)


@functools.cache
def _silent_progress_bar():
    """huggingface_hub's own per-file bars would fight the caller's progress bar on stderr."""
    from huggingface_hub.utils import tqdm

    class SilentProgressBar(tqdm):
        def __init__(self, *args, **kwargs):
            kwargs["disable"] = True
            super().__init__(*args, **kwargs)

    return SilentProgressBar


def _require_online() -> None:
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        raise _offline_error()


def _offline_error() -> CfzooError:
    return CfzooError(
        "HF_HUB_OFFLINE is set, so nothing can be downloaded; unset it to pull (models pulled before are used from the cache without it)"
    )


def _revision_error(repo_id: str, revision: str) -> CfzooError:
    return CfzooError(
        f"{repo_id} has no revision {revision!r}; pass an existing branch, tag or commit with {option('revision')}"
    )


# ---------------------------------------------------------------------------------------------------- publish


@dataclass(frozen=True)
class PublishedFile:
    path_in_repo: str
    size: int
    sha256: str
    source: Path | None  # the file copied into the repo; None for files written from ``content``
    content: bytes | None = None

    def to_json(self) -> dict:
        return {"path": self.path_in_repo, "size": self.size, "sha256": self.sha256}


@dataclass(frozen=True)
class Publication:
    """What a Hub repo will hold: the published models' registry, their ONNX files and the model cards."""

    repo_id: str
    models: tuple[str, ...]
    files: tuple[PublishedFile, ...]

    @property
    def size(self) -> int:
        return sum(file.size for file in self.files)

    def lay_out(self, folder: str | os.PathLike[str]) -> Path:
        """Write the repo's files into ``folder``, which must not exist or be empty; it appears whole or not at all."""
        folder = Path(folder)
        check_empty_destination(folder)
        folder.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", suffix=".partial", dir=folder.parent))
        try:
            for file in self.files:
                target = staging / file.path_in_repo
                target.parent.mkdir(parents=True, exist_ok=True)
                if file.content is not None:
                    target.write_bytes(file.content)
                else:
                    shutil.copyfile(file.source, target)
            os.replace(staging, folder)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        return folder


@dataclass(frozen=True)
class PublishResult:
    publication: Publication
    uploaded: bool
    reason: str  # why nothing was uploaded, or the commit that was
    folder: Path | None  # where the repo was laid out (--out)
    commit_url: str | None

    def to_json(self) -> dict:
        return {
            "repo_id": self.publication.repo_id,
            "models": list(self.publication.models),
            "uploaded": self.uploaded,
            "reason": self.reason,
            "folder": None if self.folder is None else str(self.folder),
            "commit_url": self.commit_url,
            "size": self.publication.size,
            "files": [file.to_json() for file in self.publication.files],
        }


def default_model_cards_dir() -> Path | None:
    """``model_cards/`` at the root of a cfzoo source checkout, if there is one."""
    folder = Path(__file__).resolve().parents[2] / MODEL_CARDS_FOLDER
    return folder if folder.is_dir() else None


def check_empty_destination(folder: Path) -> None:
    if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
        raise CfzooError(
            f"{folder} exists and is not an empty folder; remove it or choose another {option('out_dir', '--out')}"
        )


def plan_publication(
    repo_id: str,
    zoo_dir: str | os.PathLike[str] | None = None,
    model_ids: Iterable[str] | None = None,
    model_cards_dir: str | os.PathLike[str] | None = None,
    *,
    zoo_card: ZooCard,
) -> Publication:
    """The Hub repo for the zoo's models (default: every model of ``zoo_dir`` whose files are there; the zoo
    defaults to the user zoo). A registry may list models whose files live elsewhere (the package's lists
    Xception, 83 MB per graph, without shipping it); named in ``model_ids``, such a model is an error.

    Every ONNX file is checked against the zoo's registry first. ``registry.json`` lists only the published
    models, with their Hub source set to ``repo_id``. From ``model_cards_dir`` (default
    :func:`default_model_cards_dir`; cards come from :mod:`cfzoo.cards.model_cards`) the published families'
    ``<family>.md`` go to ``model_cards/``; the repo's ``README.md`` is the folder's ``README.md``, else the one
    family's card, else ``zoo_card(repo_id, entries, family card names)`` (:func:`cfzoo.cards.model_cards.zoo_card`:
    the models and links to the family cards).
    """
    zoo_dir = Path(zoo_dir) if zoo_dir is not None else user_zoo_dir()
    registry_path = zoo_dir / REGISTRY_NAME
    if not registry_path.is_file():
        raise CfzooError(
            f"{zoo_dir} holds no {REGISTRY_NAME}; export models into it first (cfzoo export --zoo {zoo_dir})"
        )
    zoo = Registry.read(registry_path)
    ids = list(dict.fromkeys(model_ids or [])) or [
        entry.id for entry in zoo if all((zoo_dir / file.path_in_zoo).is_file() for file in entry.files.values())
    ]
    if not ids:
        raise CfzooError(f"the zoo {zoo_dir} holds no model with its files; export some first with `cfzoo export`")
    entries = [replace(zoo.get(model_id), hub=HubSource(repo_id, DEFAULT_REVISION), embedded=False) for model_id in ids]
    model_files = []
    for entry in entries:
        for model_file in entry.files.values():
            source = zoo_dir / model_file.path_in_zoo
            if not source.is_file():
                raise CfzooError(
                    f"{source} is missing; export {entry.id} again (cfzoo export {entry.id} --zoo {zoo_dir})"
                )
            if file_sha256(source) != model_file.sha256:
                raise CfzooError(f"{source} does not match the sha256 in {registry_path}; export {entry.id} again")
            model_files.append(PublishedFile(model_file.path_in_zoo, model_file.size, model_file.sha256, source))
    registry_text = json.dumps(Registry(entries).to_json(), indent=2) + "\n"
    cards_dir = Path(model_cards_dir) if model_cards_dir is not None else default_model_cards_dir()
    if model_cards_dir is not None and not cards_dir.is_dir():
        raise CfzooError(
            f"model card folder {cards_dir} does not exist; generate the cards first or leave out {option('model_cards_dir', '--model-cards')}"
        )
    families = list(dict.fromkeys(entry.family for entry in entries))
    family_cards = (
        [card for card in (cards_dir / f"{family}.md" for family in families) if card.is_file()] if cards_dir else []
    )
    readme = cards_dir / README_NAME if cards_dir is not None and (cards_dir / README_NAME).is_file() else None
    if readme is None and len(families) == 1 and family_cards:
        readme = family_cards[0]  # one family: its card is the repo's card
    files = [_content_file(REGISTRY_NAME, registry_text.encode())]
    if readme is not None:
        files.append(_copied_file(README_NAME, readme))
    else:
        files.append(
            _content_file(README_NAME, zoo_card(repo_id, entries, [card.name for card in family_cards]).encode())
        )
    files += [_copied_file(f"{MODEL_CARDS_FOLDER}/{card.name}", card) for card in family_cards]
    return Publication(repo_id, tuple(ids), tuple(files + model_files))


def publish(
    repo_id: str,
    zoo_dir: str | os.PathLike[str] | None = None,
    model_ids: Iterable[str] | None = None,
    *,
    token: str | None = None,
    dry_run: bool = False,
    out_dir: str | os.PathLike[str] | None = None,
    model_cards_dir: str | os.PathLike[str] | None = None,
    endpoint: str | None = None,
    zoo_card: ZooCard,
) -> PublishResult:
    """Lay out the zoo as a Hub repo (into ``out_dir`` when given) and upload it with ``HfApi.upload_folder``.

    Without a token (``token``, else ``HF_TOKEN`` or a saved ``hf auth login``) this is a dry run, like
    ``dry_run=True``: nothing is uploaded and the result lists the files. An upload replaces the repo's
    ``models/`` with the published set, so the repo holds exactly what its ``registry.json`` lists
    (earlier models stay in the repo's history).
    """
    if out_dir is not None:
        check_empty_destination(Path(out_dir))  # before the checksums of every file are taken
    publication = plan_publication(repo_id, zoo_dir, model_ids, model_cards_dir, zoo_card=zoo_card)
    folder = publication.lay_out(out_dir) if out_dir is not None else None
    if not dry_run:
        from huggingface_hub import get_token

        token = token or get_token()
    if dry_run or not token:
        reason = "dry run requested" if dry_run else "no token: set HF_TOKEN or pass --token to upload"
        return PublishResult(publication, False, reason, folder, None)
    _require_online()
    with tempfile.TemporaryDirectory(prefix="cfzoo-publish-") as staging:
        upload_from = folder or publication.lay_out(Path(staging) / "repo")
        hub = _Hub(endpoint, None, token)
        hub.call("repo creation", repo_id, DEFAULT_REVISION, lambda: hub.api.create_repo(repo_id, exist_ok=True))
        commit = hub.call(
            "the upload",
            repo_id,
            DEFAULT_REVISION,
            lambda: hub.api.upload_folder(
                repo_id=repo_id,
                folder_path=upload_from,
                commit_message=f"cfzoo {__version__}: publish {len(publication.models)} models",
                delete_patterns=[f"{MODELS_FOLDER}/*.onnx"],
            ),
        )
    return PublishResult(publication, True, f"uploaded as commit {commit.oid}", folder, commit.commit_url)


def _content_file(path_in_repo: str, content: bytes) -> PublishedFile:
    return PublishedFile(path_in_repo, len(content), hashlib.sha256(content).hexdigest(), None, content)


def _copied_file(path_in_repo: str, source: Path) -> PublishedFile:
    return PublishedFile(path_in_repo, source.stat().st_size, file_sha256(source), source)
