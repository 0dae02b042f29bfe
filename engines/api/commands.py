"""``main.py serve`` (the local OpenAI-compatible API) and ``main.py bench api``."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from engines.errors import EmberError
from engines.modality import Bench, Command


def _serve_arguments(parser: argparse.ArgumentParser) -> None:
    from engines.api.server import DEFAULT_PORT, MAX_BODY_BYTES

    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default: this machine only)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT}; 0 picks one)")
    parser.add_argument(
        "--api-key",
        default=os.environ.get("EMBER_API_KEY", ""),
        help="the key clients send as 'Authorization: Bearer KEY' (default: $EMBER_API_KEY); "
        "required for any address but 127.0.0.1",
    )
    parser.add_argument("--cors", action="append", default=[], metavar="ORIGIN", help="allow a web origin ('*': any)")
    parser.add_argument("--rate-limit", type=int, default=120, help="requests a minute from one address (0: no limit)")
    parser.add_argument("--max-body-bytes", type=int, default=MAX_BODY_BYTES, help="largest JSON body accepted")
    parser.add_argument("--context", type=int, default=4096, help="context length text models load with, in tokens")


def cmd_serve(args: argparse.Namespace) -> int:
    """Serve the API until Ctrl+C; exit 0 then, 1 with the reason when it cannot start."""
    from engines.api.server import ApiServer, ServerSettings
    from engines.studio import Studio

    if args.context < 256:
        raise EmberError("--context must be at least 256 tokens.")
    settings = ServerSettings(
        host=args.host,
        port=args.port,
        api_key=args.api_key,
        rate_per_minute=args.rate_limit,
        max_body_bytes=args.max_body_bytes,
        cors_origins=tuple(args.cors),
        context_tokens=args.context,
    )
    from engines.api.server import check_settings

    check_settings(settings)  # before a Studio starts its engine processes
    studio = Studio()
    try:
        server = ApiServer(studio, settings)
        key = "with an API key" if settings.api_key else "without a key (this machine only)"
        print(f"ember: serving the OpenAI-compatible API on {server.url} {key}; Ctrl+C stops", file=sys.stderr)
        sys.stderr.flush()
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            pass
        finally:
            server.close()
    finally:
        studio.close()
    return 0


SERVE = Command(
    name="serve",
    help="serve an OpenAI-compatible API on this machine (chat, completions, images, speech, transcription)",
    description="Serve Ember's models over an OpenAI-compatible HTTP API on 127.0.0.1 (any other address needs "
    "--api-key). Every output goes through the safety filter, carries the watermark and is kept in the library, "
    "as in the window. Ctrl+C stops it.",
    arguments=_serve_arguments,
    run=cmd_serve,
)


def _bench_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--tokens", type=int, default=32, help="tokens each request generates")
    parser.add_argument("--clients", default="1,4,16", help="concurrent clients of each round (comma-separated)")
    parser.add_argument("--requests", type=int, default=2, help="requests each client sends a round")


def _bench(args: argparse.Namespace) -> Any:
    from engines.benchmarks.api import run_api_bench

    try:
        clients = [int(x) for x in args.clients.split(",") if x.strip()]
    except ValueError:
        raise EmberError("--clients must be numbers, like 1,4,16.") from None
    if not clients or min(clients) < 1 or args.tokens < 1 or args.requests < 1:
        raise EmberError("--clients, --tokens and --requests must be at least 1.")
    return run_api_bench(tokens=args.tokens, clients=clients, requests_each=args.requests)


API_BENCH = Bench(
    name="api",
    help="requests/s and time to first token through the local API with 1, 4 and 16 clients, beside the Studio",
    arguments=_bench_arguments,
    run=_bench,
)
