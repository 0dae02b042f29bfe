"""A separate indexer process for the kill tests: ``python index_child.py DB FOLDER [--stall FILE:N] [--slow S]``.

It indexes FOLDER into DB with the real embedder and prints one line a progress report.
``--stall FILE:N`` stops it (asleep, printing STALLED) once N passages of FILE have vectors,
so the test can kill it there with SIGKILL; ``--slow S`` sleeps S seconds a report, so that
a kill at a random moment lands inside the run.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("db")
    parser.add_argument("folder")
    parser.add_argument("--stall", default="")
    parser.add_argument("--slow", type=float, default=0.0)
    args = parser.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parents[3]))

    from engines.database import Database
    from engines.documents.embedding import Tokens, local_embed
    from engines.documents.service import Documents

    stall_name, _, stall_at = args.stall.partition(":")

    def progress(p) -> None:
        print(f"progress {p.done}/{p.total} {Path(p.file).name} {p.file_chunks_done}/{p.file_chunks_total}", flush=True)
        if stall_name and Path(p.file).name == stall_name and p.file_chunks_done >= int(stall_at):
            print("STALLED", flush=True)
            time.sleep(600)
        if args.slow:
            time.sleep(args.slow)

    db = Database(args.db)
    documents = Documents(db, local_embed(), tokens=Tokens())
    report = documents.index_folder(args.folder, progress)
    print(f"DONE {report.indexed} {report.resumed} {report.unchanged}", flush=True)
    db.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
