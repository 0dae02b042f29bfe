"""The documents as the Studio holds them: the index, its embedder, the index job and the chat hook.

The Studio makes one :class:`Documents` over its database and engine pool
(:meth:`Documents.for_studio`), runs :class:`IndexFolderRequest` jobs with :meth:`Documents.run_job`
on a lane of their own (a long index run must not hold the CPU lane a chat reply needs), and the
Chat panel turns a request into one grounded in the person's documents with
:meth:`Documents.ground` before submitting it (off the window's thread: it embeds the question).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, ClassVar

from engines.database import Database
from engines.documents.embedding import Tokens, embedding_model_id, engine_embed
from engines.documents.grounding import GroundedPrompt, passage_budget, prompt_with_passages
from engines.documents.indexing import IndexProgress, IndexReport, ProgressCallback, document_paths, index_folder
from engines.documents.search import Fusion, Mode, Passage, search
from engines.documents.store import DocumentIndex, FileInfo, FolderInfo, normalise
from engines.errors import ContextOverflowError, EmberError, InvalidRequestError
from engines.safety.semantic import MAX_TOKENS, Embed
from engines.text.requests import ChatRequest, Message

log = logging.getLogger(__name__)

LANE = "documents"  # the job queue's lane for index runs (and the engine process that embeds)
PASSAGES = 6  # found for a question; as many as fit the budget go into the message
PROGRESS_EVERY_S = 0.05  # index progress events at most 20 a second (the last one always)
WATCH_EVERY_S = 20.0  # how often the indexed folders are looked over for changes while Ember runs


@dataclass(frozen=True)
class IndexFolderRequest:
    """Bring a folder's index up to date (adding the folder if it is new): a job of the documents lane."""

    PROMPTLESS: ClassVar[bool] = True  # file paths, no text a person wrote for a model

    folder: str


EMBED_LANE = "embeddings"  # the job queue's lane for texts to embed: never behind a folder's index run
EMBED_MAX_TEXTS = 2048  # texts in one request (OpenAI's limit for /v1/embeddings)


@dataclass(frozen=True)
class EmbedTextsRequest:
    """Texts to unit vectors with the document search's embedding model (the API's ``/v1/embeddings``).

    Nothing is generated and nobody reads a vector, so there is no prompt to check and no output to
    keep: the texts go to the model and the vectors back, as the documents' own passages do.
    """

    PROMPTLESS: ClassVar[bool] = True

    texts: tuple[str, ...]


@dataclass(frozen=True)
class Embeddings:
    """One unit vector a text (len(texts) x 384, float32), the word pieces each text took, the model's id."""

    vectors: Any
    tokens: tuple[int, ...]
    model: str


@dataclass(frozen=True)
class GroundedChat:
    """A chat request whose newest message carries the passages, and what they cite.

    ``withheld`` counts the passages left out because the safety filter would refuse them as a
    request (the whole message is checked as the person's prompt when it is submitted).
    """

    request: ChatRequest
    prompt: GroundedPrompt
    withheld: int = 0

    @property
    def citations(self) -> tuple[Any, ...]:
        return self.prompt.citations


class Documents:
    """Folders of documents, indexed and searchable. Thread-safe; index runs go one at a time."""

    def __init__(self, db: Database, embed: Embed | None, *, tokens: Tokens | None = None) -> None:
        self.store = DocumentIndex(db)
        self._embed = embed
        self._tokens = tokens or Tokens()
        self._model_id: str | None = None
        self._run_lock = threading.Lock()
        self._jobs: dict[str, list[Any]] = {}  # folder -> its index jobs not yet done (queued or running)
        self._jobs_lock = threading.Lock()
        self.meaning_unavailable: str | None = None  # why search fell back to keywords, for the panel

    @classmethod
    def for_studio(cls, studio: Any) -> Documents:
        """The documents of a Studio: its database, vectors made in its "documents" engine process."""
        return cls(studio.db, engine_embed(studio.engines))

    # -- folders ------------------------------------------------------------------------------
    def add_folder(self, path: Path | str) -> IndexFolderRequest:
        """Remember a folder and return the request that indexes it. Raises EmberError if it is no folder."""
        return IndexFolderRequest(self.store.add_folder(path).path)

    def remove_folder(self, path: Path | str) -> bool:
        """Forget a folder and its passages (the files stay); returns whether it was there."""
        return self.store.remove_folder(path)

    def folders(self) -> list[FolderInfo]:
        return self.store.folders()

    def files(self, folder: Path | str) -> list[FileInfo]:
        """The files of a folder with their status and errors ([] for an unknown folder)."""
        info = self.store.folder(folder)
        return self.store.files(info.id) if info else []

    def refresh_requests(self) -> list[IndexFolderRequest]:
        """One request a folder, for the Studio's start: finishes what a stopped run left, picks up changes."""
        return [IndexFolderRequest(f.path) for f in self.store.folders()]

    def changed(self, folder: FolderInfo) -> bool:
        """Whether ``folder`` differs from its index: a document added or gone, another size or mtime,
        or one a stopped run left half read. A stat of each file, no reading; False for a folder
        that is not there now (an unplugged drive keeps its index)."""
        root = Path(folder.path)
        if not root.is_dir():
            return False
        known = {f.path: f for f in self.store.files(folder.id)}
        paths = document_paths(root)
        if len(paths) != len(known):
            return True
        for path in paths:
            row = known.get(str(path))
            try:
                stat = path.stat()
            except OSError:
                return True
            if row is None or row.status == "embedding" or (row.size, row.mtime_ns) != (stat.st_size, stat.st_mtime_ns):
                return True
        return False

    def changed_folders(self) -> list[str]:
        """The folders that :meth:`changed` and have no index run queued or running already."""
        busy = self.index_jobs()
        found = []
        for folder in self.store.folders():
            try:
                if folder.path not in busy and self.changed(folder):
                    found.append(folder.path)
            except OSError as exc:  # a folder that cannot be walked now is looked at again next time
                log.info("Cannot look over %s for changes: %s", folder.path, exc)
        return found

    # -- index jobs ----------------------------------------------------------------------------
    def track(self, job: Any) -> None:
        """Remember a submitted :class:`IndexFolderRequest` job (the Studio does, for every one)."""
        with self._jobs_lock:
            self._jobs.setdefault(normalise(job.request.folder), []).append(job)

    def index_jobs(self) -> dict[str, list[Any]]:
        """Folder -> its index jobs queued or running now, whoever started them (the window, the
        start-up refresh, the folder watch)."""
        with self._jobs_lock:
            for folder in list(self._jobs):
                # ended, not only done: a listener handling the end (the dialog) must not see it still running
                self._jobs[folder] = [job for job in self._jobs[folder] if not job.ended]
                if not self._jobs[folder]:
                    del self._jobs[folder]
            return {folder: list(jobs) for folder, jobs in self._jobs.items()}

    def queued_job(self, folder: Path | str) -> Any | None:
        """The index job of ``folder`` that waits and has not started, or None (a second is not needed)."""
        return next((job for job in self.index_jobs().get(normalise(folder), []) if not job.started), None)

    def stop(self, folder: Path | str) -> bool:
        """Stop the index runs of ``folder`` (what they saved stays; the next run resumes). Returns whether any ran."""
        jobs = self.index_jobs().get(normalise(folder), [])
        for job in jobs:
            job.cancel()
        return bool(jobs)

    # -- indexing -----------------------------------------------------------------------------
    def index_folder(
        self, folder: Path | str, progress: ProgressCallback | None = None, cancel: Any = None
    ) -> IndexReport:
        """Index ``folder`` now, on this thread (see :func:`engines.documents.indexing.index_folder`)."""
        if self._embed is None:
            raise EmberError("Document search has no embedding model here, so folders cannot be indexed.")
        with self._run_lock:
            if self._model_id is None:
                self._model_id = embedding_model_id()
            model = self._model_id
            return index_folder(self.store, folder, self._embed, self._tokens, progress, cancel, model_id=model)

    def run_job(self, job: Any) -> IndexReport:
        """Run an :class:`IndexFolderRequest` job (the Studio's handler): PROGRESS events carry IndexProgress."""
        from engines.jobs import EventKind

        last = [0.0]

        def progress(update: IndexProgress) -> None:
            now = time.monotonic()
            if now - last[0] >= PROGRESS_EVERY_S or update.done == update.total:
                last[0] = now
                job.emit(EventKind.PROGRESS, update)

        report = self.index_folder(job.request.folder, progress, job.cancel_token)
        if report.failed:
            job.emit(EventKind.NOTICE, _failures_notice(report))
        return report

    # -- embeddings ---------------------------------------------------------------------------
    def token_counts(self, texts: Sequence[str]) -> list[int]:
        """The word pieces each text takes in the embedding model, with its [CLS] and [SEP]."""
        return [self._tokens.count(text) + 2 for text in texts]

    def check_texts(self, texts: Sequence[str]) -> list[int]:
        """Raise EmberError for texts the embedding model cannot take whole; return their token counts."""
        if not texts:
            raise InvalidRequestError("Give at least one text to embed.", "input")
        if len(texts) > EMBED_MAX_TEXTS:
            raise InvalidRequestError(
                f"{len(texts)} texts is more than the {EMBED_MAX_TEXTS} one request may embed.", "input"
            )
        counts = self.token_counts(texts)
        for index, (text, count) in enumerate(zip(texts, counts, strict=True)):
            if not text.strip():
                raise InvalidRequestError(f"Text {index} is empty; an empty text has no meaning to embed.", "input")
            if count > MAX_TOKENS:
                raise ContextOverflowError(
                    f"Text {index} is {count} tokens; the embedding model reads at most {MAX_TOKENS} (it would "
                    "cut the rest off unseen). Split it, as document search does with its passages."
                )
        return counts

    def run_embed_job(self, job: Any) -> Embeddings:
        """Run an :class:`EmbedTextsRequest` job (the Studio's handler)."""
        if self._embed is None:
            raise EmberError("There is no embedding model here.")
        texts = list(job.request.texts)
        counts = self.check_texts(texts)
        if self._model_id is None:
            self._model_id = embedding_model_id()
        return Embeddings(self._embed(texts), tuple(counts), self._model_id)

    # -- search and chat ----------------------------------------------------------------------
    def search(
        self,
        query: str,
        *,
        k: int = 5,
        mode: Mode = "hybrid",
        fusion: Fusion = "rrf",
        folders: Sequence[Path | str] | None = None,
    ) -> list[Passage]:
        """The best passages for ``query`` (see :func:`engines.documents.search.search`).

        When the embedding model cannot run, hybrid search falls back to keywords and
        :attr:`meaning_unavailable` says why; "meaning" alone raises EmberError then.
        """
        folder_ids = None
        if folders is not None:
            known = {f.path: f.id for f in self.store.folders()}
            folder_ids = [known[p] for p in (str(Path(f).expanduser().resolve()) for f in folders) if p in known]
        try:
            found = search(self.store, query, self._embed, k=k, mode=mode, fusion=fusion, folder_ids=folder_ids)
            if mode != "keywords" and self._embed is not None:
                self.meaning_unavailable = None
            return found
        except EmberError as exc:
            if mode == "meaning":
                raise
            self.meaning_unavailable = str(exc)
            log.warning("Document search by meaning failed (%s); searching by keywords.", exc)
            return search(self.store, query, None, k=k, mode="keywords", folder_ids=folder_ids)

    def ground(
        self,
        request: ChatRequest,
        *,
        k: int = PASSAGES,
        folders: Sequence[Path | str] | None = None,
        budget_tokens: int | None = None,
        screen: Callable[[str], bool] | None = None,
    ) -> GroundedChat:
        """``request`` with the best passages for its newest message put before it, and their citations.

        The budget comes from the request's context and max tokens (:func:`passage_budget`) unless
        given. ``screen(message)`` says whether a message may be sent (the Studio's: whether the
        safety filter lets it through as a prompt, :func:`safety_screen`): a passage whose message
        it refuses is left out and counted in ``withheld``, and a question it refuses alone gets no
        passages (so that the check at submission sees it as the person wrote it). A request whose
        newest message is not the person's (Continue) comes back unchanged. Runs the embedder and
        the screen: call it off the window's thread.
        """
        if not request.messages or request.messages[-1].role != "user" or request.mode != "reply":
            return GroundedChat(request, GroundedPrompt("", "", (), ()))
        question = request.messages[-1].content
        if screen is not None and not screen(question):
            # Refused alone, the question goes as it is, to be refused at submission: passages around it
            # must not dilute the check (the meaning layer reads a message's first 256 tokens).
            return GroundedChat(request, GroundedPrompt("", question, (), ()))
        passages = self.search(question, k=k, folders=folders)
        if budget_tokens is None:
            used = (len(request.system_prompt) + len(question)) // 3 + 64  # the chat template's own tokens
            budget_tokens = passage_budget(request.model.context_tokens, request.sampling.max_tokens, used)
        prompt = prompt_with_passages(question, passages if screen is None else [], budget_tokens)
        withheld = 0
        if screen is not None:
            # Passage by passage, best first, each kept only if the message with it still passes: the
            # filter judges the whole message, so two harmless passages can still trip it together.
            kept: list[Passage] = []
            for passage in passages:
                trial = prompt_with_passages(question, [*kept, passage], budget_tokens)
                if trial.passages == prompt.passages:
                    continue  # it did not fit
                if screen(trial.message):
                    kept.append(passage)
                    prompt = trial
                else:
                    withheld += 1
        messages = (*request.messages[:-1], Message("user", prompt.message))
        return GroundedChat(replace(request, messages=messages), prompt, withheld)


def safety_screen(safety: Any) -> Callable[[str], bool]:
    """A ``screen`` for :meth:`Documents.ground`: whether ``safety`` (a SafetyFilter) allows a text as a prompt.

    The grounded message is checked whole as the person's prompt at submission: a passage that
    the filter would refuse (a manual quoting the categories it blocks) would block the question
    with it, so it is left out instead, and the chat says so. Nothing goes around the check.
    """

    def allowed(text: str) -> bool:
        return bool(safety.check_text(text, "prompt").allowed)

    return allowed


def _failures_notice(report: IndexReport) -> str:
    names = ", ".join(f"{Path(p).name} ({reason})" for p, reason in report.failed[:3])
    more = f" and {len(report.failed) - 3} more" if len(report.failed) > 3 else ""
    return f"{len(report.failed)} file(s) in {report.folder} could not be indexed: {names}{more}."
