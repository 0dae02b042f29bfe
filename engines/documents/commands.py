"""``main.py docs``: add a folder of documents, search it, ask a question answered from it.

    main.py docs add ~/Notes            index (again: only what changed); Ctrl+C stops, the next run resumes
    main.py docs search "query" [--json] [--mode hybrid|keywords|meaning] [-k 5]
    main.py docs ask "question"         a chat reply from the best passages, with their sources
    main.py docs list                   the folders, their counts and the files that could not be read
    main.py docs remove ~/Notes         forget a folder (the files stay)

``add`` and ``search`` embed in a "documents" engine process of their own; ``ask`` runs through a
Studio like the window: the question passes the safety filter, the reply streams through the
output pipeline, and it is kept in no conversation.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

from engines.errors import Cancelled, EmberError
from engines.modality import Command


def _open(db_path: str | None = None) -> tuple[Any, Any]:
    """Documents over the person's database with an engine pool of their own, and a closer (no Studio)."""
    import logging

    from engines.database import Database
    from engines.documents.embedding import engine_embed
    from engines.documents.service import Documents
    from engines.host import EnginePool
    from engines.host.wire import EngineContext
    from engines.paths import database_path
    from engines.studio import engine_factory_for

    db = Database(db_path or database_path())
    pool = EnginePool(EngineContext(log_level=logging.getLogger().getEffectiveLevel()), engine_factory_for)
    documents = Documents(db, engine_embed(pool))

    def close() -> None:
        pool.close()
        db.close()

    return documents, close


def _add(args: argparse.Namespace) -> int:
    from engines.jobs import CancelToken

    documents, close = _open()
    cancel = CancelToken()
    previous = signal.signal(signal.SIGINT, lambda *_: cancel.cancel())
    try:
        request = documents.add_folder(args.folder)
        try:
            report = documents.index_folder(request.folder, None if args.quiet else _show_progress, cancel)
        except Cancelled:
            print("\nember: stopped; what was indexed is kept; run the same command to go on.", file=sys.stderr)
            return 130
    finally:
        signal.signal(signal.SIGINT, previous)
        close()
    if not args.quiet:
        print(file=sys.stderr)
    if args.json:
        print(json.dumps({**asdict(report), "chunks_per_s": report.chunks_per_s}, indent=2))
        return 0
    print(
        f"{report.folder}: {report.files} files; {report.indexed} indexed, {report.resumed} resumed, "
        f"{report.unchanged} unchanged, {report.removed} removed; {report.chunks} passages "
        f"({report.chunks_embedded} embedded, {report.chunks_per_s:.1f}/s)"
    )
    for note in report.notes:
        print(f"ember: {note}", file=sys.stderr)
    for path, reason in report.failed:
        print(f"ember: could not index {path}: {reason}", file=sys.stderr)
    return 0


def _show_progress(progress: Any) -> None:
    name = Path(progress.file).name if progress.file else ""
    inside = f" {progress.file_chunks_done}/{progress.file_chunks_total}" if progress.file_chunks_total else ""
    line = f"{progress.done}/{progress.total} files, {progress.chunks_done} passages embedded  {name}{inside}"
    print(f"\r{line[:110]:<110}", end="", file=sys.stderr, flush=True)


def _search(args: argparse.Namespace) -> int:
    documents, close = _open()
    try:
        passages = documents.search(args.query, k=args.k, mode=args.mode)
        fallback = documents.meaning_unavailable
    finally:
        close()
    if fallback and args.mode == "hybrid":
        print(f"ember: searching by keywords only: {fallback}", file=sys.stderr)
    if args.json:
        print(json.dumps([asdict(p) for p in passages], indent=2, ensure_ascii=False))
        return 0
    if not passages:
        print("ember: nothing found (add a folder first with: main.py docs add FOLDER)", file=sys.stderr)
        return 0
    from engines.documents.grounding import Citation

    for rank, p in enumerate(passages, 1):
        label = Citation(p.path, p.page, p.start, p.end, p.title, rank, p.line, p.heading).label
        print(f"{rank}. {p.path}  ({label}; {'+'.join(p.found_by)}, score {p.score:.3f})")
        snippet = " ".join(p.text.split())
        print(f"   {snippet[:300]}{'...' if len(snippet) > 300 else ''}")
    return 0


def _ask(args: argparse.Namespace) -> int:
    from engines.documents.grounding import cited_numbers
    from engines.documents.service import Documents, safety_screen
    from engines.jobs import EventKind
    from engines.studio import Studio
    from engines.text.commands import model_path
    from engines.text.requests import ChatRequest, Message, ModelOptions, Sampling

    question = sys.stdin.read() if args.question == "-" else args.question
    if not question.strip():
        raise EmberError("The question is empty. Give a text, or '-' to read it from standard input.")
    try:
        sampling = Sampling(temperature=args.temperature, seed=args.seed, max_tokens=args.max_tokens)
    except ValueError as exc:
        raise EmberError(str(exc)) from None
    options = ModelOptions(model_path(args.model), context_tokens=args.context, device=args.device)
    studio = Studio()
    try:
        documents = Documents.for_studio(studio)
        request = ChatRequest(options, (Message("user", question),), sampling=sampling)
        grounded = documents.ground(request, k=args.k, screen=safety_screen(studio.safety))
        if grounded.withheld:
            left = f"{grounded.withheld} passage(s) left out: the safety filter would refuse them"
            print(f"ember: {left}.", file=sys.stderr)
        if not grounded.citations:
            print("ember: no passages found; answering without your documents.", file=sys.stderr)

        def show(event: Any) -> None:
            if event.kind is EventKind.TOKEN and not args.json:
                sys.stdout.write(event.data)
                sys.stdout.flush()
            elif event.kind is EventKind.NOTICE:
                print(f"\nember: {event.data}", file=sys.stderr)

        job = studio.submit(grounded.request, listener=show)
        previous = signal.signal(signal.SIGINT, lambda *_: job.cancel())
        try:
            final = job.wait()
        finally:
            signal.signal(signal.SIGINT, previous)
    finally:
        studio.close()
    assert final is not None
    if final.kind is EventKind.BLOCKED:
        print(f"ember: {getattr(final.data, 'reason', '') or 'withheld by the safety filter.'}", file=sys.stderr)
        return 3
    if final.kind is EventKind.CANCELLED:
        print("\nember: stopped.", file=sys.stderr)
        return 130
    if final.kind is not EventKind.RESULT:
        raise EmberError(str(final.data))
    reply = final.data.output.text
    cited = cited_numbers(reply, grounded.citations)
    if args.json:
        data = {
            "reply": reply,
            "output_id": final.data.record.output_id,
            "citations": [asdict(c) for c in grounded.citations],
            "cited": cited,
        }
        print(json.dumps(data, indent=2, ensure_ascii=False))
        return 0
    print()
    if grounded.citations:
        print("\nSources:")
        for c in grounded.citations:
            mark = "*" if c.number in cited else " "
            print(f"{mark}[{c.number}] {c.label}  {c.path}")
    return 0


def _list(args: argparse.Namespace) -> int:
    documents, close = _open()
    try:
        folders = documents.folders()
        failed = {f.path: [x for x in documents.files(f.path) if x.status == "error"] for f in folders}
    finally:
        close()
    if args.json:
        rows = [{**asdict(f), "errors": [{"path": x.path, "error": x.error} for x in failed[f.path]]} for f in folders]
        print(json.dumps(rows, indent=2))
        return 0
    if not folders:
        print("ember: no folders yet (add one with: main.py docs add FOLDER)", file=sys.stderr)
    for f in folders:
        state = f"indexed {f.indexed_utc}" if f.indexed_utc else "not fully indexed yet"
        print(f"{f.path}: {f.files} files ({f.files_done} done, {f.files_failed} failed), {f.chunks} passages; {state}")
        for x in failed[f.path]:
            print(f"  could not index {x.path}: {x.error}")
    return 0


def _remove(args: argparse.Namespace) -> int:
    documents, close = _open()
    try:
        gone = documents.remove_folder(args.folder)
    finally:
        close()
    if not gone:
        raise EmberError(f"'{args.folder}' is not one of the document folders (main.py docs list shows them).")
    print(f"forgot {args.folder} (its files stay where they are)")
    return 0


def _arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="docs_action", metavar="ACTION", required=True)
    add = actions.add_parser("add", help="add a folder and index it (again: only what changed)")
    add.add_argument("folder")
    add.add_argument("--quiet", action="store_true", help="no progress line")
    add.add_argument("--json", action="store_true", help="what the run did, as JSON")
    add.set_defaults(docs_run=_add)

    find = actions.add_parser("search", help="the best passages for a query")
    find.add_argument("query")
    find.add_argument("-k", type=int, default=5, help="how many passages (default 5)")
    find.add_argument("--mode", choices=["hybrid", "keywords", "meaning"], default="hybrid")
    find.add_argument("--json", action="store_true")
    find.set_defaults(docs_run=_search)

    ask = actions.add_parser("ask", help="answer a question from the documents, citing them")
    ask.add_argument("question", help="your question, or '-' to read it from standard input")
    ask.add_argument("--model", help="a .gguf file or an embedded model id (default: smollm2-135m-instruct)")
    ask.add_argument("-k", type=int, default=6, help="passages to look at (as many as fit go in)")
    ask.add_argument("--temperature", type=float, default=0.2)
    ask.add_argument("--seed", type=int, default=None)
    ask.add_argument("--max-tokens", type=int, default=256)
    ask.add_argument("--context", type=int, default=4096, help="context length in tokens")
    ask.add_argument("--device", choices=["auto", "cpu", "gpu"], default="auto")
    ask.add_argument("--json", action="store_true", help="the reply, its citations and which it cited")
    ask.set_defaults(docs_run=_ask)

    listing = actions.add_parser("list", help="the folders and the files that could not be read")
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(docs_run=_list)

    remove = actions.add_parser("remove", help="forget a folder (its files stay)")
    remove.add_argument("folder")
    remove.set_defaults(docs_run=_remove)


def cmd_docs(args: argparse.Namespace) -> int:
    """Run one ``docs`` action; returns its exit status (EmberError for a failure, with the reason)."""
    return int(args.docs_run(args))


DOCS_COMMAND = Command(
    name="docs",
    help="chat with your documents: add a folder, search it, ask it",
    description="Index folders of .txt, .md and .pdf files (by keywords and by meaning, in Ember's database), "
    "search them, and ask questions answered from the best passages with numbered sources. Indexing is "
    "incremental (only changed files are read again) and resumable (Ctrl+C keeps what was done). Exit "
    "status: 0 done, 3 withheld by the safety filter, 1 error, 130 stopped.",
    arguments=_arguments,
    run=cmd_docs,
)
