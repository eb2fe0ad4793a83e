"""The studio in the browser. Composition root only: settings → engine → rules → job service → UI → server.

    python app.py                 # opens http://127.0.0.1:7860 in your browser
    python app.py --model tiny    # no download needed: a random-weight model that draws noise
"""

from __future__ import annotations

import logging
import sys

from studio.config import StudioParser, add_engine_arguments, argument_groups, settings_from_args
from studio.web.app import add_server_arguments


def parser() -> StudioParser:
    """app.py's flags, under the engine's headings (studio/config.py); studio/web/app.py's join "server"."""
    p = StudioParser(description="Stable Diffusion studio in the browser. From the command line: python -m studio generate")
    argument_groups(p)  # the headings, in --help's order
    add_server_arguments(p)  # first in "server": --listen, --port, ...
    add_engine_arguments(p)
    # studio/web/app.py's flags that lack a help line or a metavar get one here (theirs, once given, wins)
    p.fill_in("--port", help="the port to serve on", metavar="N")
    p.fill_in("--tls-keyfile", metavar="FILE")
    p.fill_in("--tls-certfile", metavar="FILE")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = settings_from_args(args)

    from studio.access import Access
    from studio.checkpoints import ModelError
    from studio.engine import Engine
    from studio.outputs import OutputStore
    from studio.service import JobService
    from studio.ui import CSS, build_ui
    from studio.validation import limit_decoder
    from studio.web.app import check_server_arguments, create_app, serve, users_from_args
    from studio.web.gradio_files import GradioFiles, private_gradio_cache

    users = users_from_args(args)
    check_server_arguments(args)
    limit_decoder(settings)  # PIL refuses images over --max-image-pixels wherever they are decoded
    private_gradio_cache(settings.cache_dir)  # Gradio's cache: a 0700 folder of ours, not /tmp/gradio

    try:
        engine = Engine(settings, OutputStore(settings.outputs)).start()
    except (ModelError, RuntimeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    service = JobService(engine, Access(engine, users))
    files = GradioFiles()
    blocks = build_ui(service, files=files)
    app = create_app(blocks, service, users, files=files, secure_cookies=bool(args.tls_certfile),
                     state_dir=settings.cache_dir, css=CSS)
    serve(app, args, users)
    return 0


if __name__ == "__main__":
    sys.exit(main())
