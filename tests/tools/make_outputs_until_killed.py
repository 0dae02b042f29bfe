"""Makes outputs through a Studio until it is killed: the subprocess of tests/engines/test_library_crash.py.

It first resumes what the last (killed) run left pending, then keeps three compositions in the
queue. Each line it prints says what already holds on disk when it is printed:
``offered S...`` (the seeds pending from the last run), ``submitted S`` (the job's pending row is
written), ``done S KIND`` (the job has ended and its row is gone).
"""

from __future__ import annotations

import sys


def main() -> None:
    from engines.music.requests import ComposeRequest
    from engines.studio import Studio

    seed = int(sys.argv[1])
    studio = Studio()
    offered = studio.pending_from_last_run()
    print("offered", *(r.seed for r in offered), flush=True)
    in_flight = []
    for job in studio.resume_pending():
        print("submitted", job.request.seed, flush=True)
        in_flight.append(job)
    while True:
        while len(in_flight) < 3:
            job = studio.submit(ComposeRequest(bars=1, seed=seed))
            print("submitted", seed, flush=True)
            in_flight.append(job)
            seed += 1
        job = in_flight.pop(0)
        final = job.wait(60)
        print("done", job.request.seed, final.kind.value if final else "timeout", flush=True)


if __name__ == "__main__":
    main()
