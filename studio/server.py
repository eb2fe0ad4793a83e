"""Serving the UI: address, port, browser tab. (Logins, the REST API and the shared-server rules come here.)"""

from __future__ import annotations

import argparse


def add_server_arguments(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("server")
    g.add_argument("--listen", action="store_true", help="serve on all interfaces (default: this machine only)")
    g.add_argument("--port", type=int, default=7860)
    g.add_argument("--no-browser", action="store_true", help="do not open a browser tab")


def serve(blocks, engine, args: argparse.Namespace) -> None:
    blocks.queue(default_concurrency_limit=None).launch(
        server_name="0.0.0.0" if args.listen else "127.0.0.1",
        server_port=args.port,
        inbrowser=not args.no_browser,
    )
