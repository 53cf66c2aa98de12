"""`seqmnist serve`: the drawing page and the JSON API for trained runs, on uvicorn."""

from __future__ import annotations

import argparse
import ipaddress
import signal
import socket
import sys
from pathlib import Path

from seqmnist.cli.paths import path_argument, positive_int
from seqmnist.cli.startup import PRELOAD, signals_held
from seqmnist.errors import ConfigError


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "serve",
        help="serve trained runs: a page to draw digits on, and a JSON API",
        description=(
            "Serve trained runs over HTTP: a page where you draw a digit and watch each "
            "network read it row by row, and the API (POST /api/predict, GET /api/runs, "
            "GET /healthz, GET /openapi.json). Listens on 127.0.0.1 unless --host says "
            "otherwise; Ctrl-C stops it."
        ),
    )
    parser.add_argument(
        "runs", type=_run_argument, nargs="+", metavar="RUN",
        help="run directory written by train, or NAME=DIR to serve it under another name "
        "(the folder's name by default)",
    )  # fmt: skip
    parser.add_argument(
        "--host", default="127.0.0.1",
        help="address to listen on (default: 127.0.0.1, this machine only); another address "
        "lets other machines in, and the server has no authentication",
    )  # fmt: skip
    parser.add_argument(
        "--port",
        type=int,
        default=8000,
        help="port to listen on; 0 picks a free one (default: 8000)",
    )
    parser.add_argument(
        "--max-upload-mb", type=positive_int, default=10, metavar="MB",
        help="largest request body accepted, in MiB (default: 10)",
    )  # fmt: skip
    parser.add_argument("--access-log", action="store_true", help="log every request to stderr")
    parser.set_defaults(handler=run, preload=(*PRELOAD, "PIL.Image"))


def _run_argument(text: str) -> tuple[str | None, Path]:
    """DIR, or NAME=DIR; a folder whose own name holds '=' is still taken whole."""
    name, separator, rest = text.partition("=")
    if separator and name and not Path(text).exists():
        return name, path_argument(rest)
    return None, path_argument(text)


def run(args: argparse.Namespace) -> int:
    with signals_held():
        import torch

        try:
            import uvicorn

            from seqmnist.use.serve import create_app
        except ImportError as error:
            raise ConfigError(
                f"seqmnist serve needs FastAPI and uvicorn ({error.name} is missing); "
                "install them with: pip install 'seqmnist[serve]'"
            ) from None
    if not 0 <= args.port <= 65535:
        raise ConfigError(f"--port must be between 0 and 65535, got {args.port}")
    # One intra-op thread: a served batch is small (64 images at most), and a second
    # thread's OpenMP worker spun waiting for the next one on the core the server's
    # Python and the clients need (benchmarks/serve_load.py, 16 clients on 2 cores:
    # 1.7 ms of server CPU a request with 1 thread, 2.9 ms with 2, for fewer answers).
    torch.set_num_threads(1)
    app = create_app(_named_runs(args.runs), max_body_bytes=args.max_upload_mb * 2**20)
    listening = _listen(args.host, args.port)
    host, port = listening.getsockname()[:2]
    if not is_loopback(args.host):
        print(
            f"seqmnist: warning: listening on {args.host}, reachable from other machines; "
            "the server has no authentication: anyone who can reach it can use it",
            file=sys.stderr,
        )
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            log_level="warning",
            access_log=args.access_log,
            timeout_graceful_shutdown=5,
            # The app is closed below; with uvicorn's lifespan, a second Ctrl-C
            # (which cancels everything at once) would print a CancelledError.
            lifespan="off",
        )  # fmt: skip
    )
    shown = f"[{host}]" if ":" in host else host
    print(
        f"serving {', '.join(app.state.runs)} at http://{shown}:{port}/ (Ctrl-C stops)", flush=True
    )

    # Ctrl-C and SIGTERM ask the server to finish (uvicorn's own handlers do the same
    # while it runs). Set before uvicorn starts, so a signal while it starts is not lost;
    # uvicorn also passes the signal it acted on to this handler when it is done, where
    # Python's default would raise KeyboardInterrupt inside the closing event loop.
    def stop(number, frame) -> None:
        server.should_exit = True

    for number in (signal.SIGINT, signal.SIGTERM):
        signal.signal(number, stop)
    try:
        server.run(sockets=[listening])
    finally:
        listening.close()
        app.state.close()
    print("seqmnist: server stopped", file=sys.stderr)
    return 0


def _named_runs(runs: list[tuple[str | None, Path]]) -> list[Path | tuple[str, Path]]:
    # Pairs, not a dict: two runs given one name must be refused, not one dropped.
    return [path if name is None else (name, path) for name, path in runs]


def _listen(host: str, port: int) -> socket.socket:
    """A socket bound to (host, port), so port 0 gives the free port it got before serving."""
    try:
        family, kind, protocol, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
    except socket.gaierror as error:
        raise ConfigError(
            f"--host {host!r} is not an address this machine knows: {error.strerror}"
        ) from None
    listening = socket.socket(family, kind, protocol)
    listening.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listening.bind(address)
    except OSError as error:
        listening.close()
        advice = "choose another --port" if error.errno == 98 else "check --host and --port"
        raise ConfigError(f"cannot listen on {host}:{port}: {error.strerror}; {advice}") from None
    return listening


def is_loopback(host: str) -> bool:
    """Whether ``host`` names this machine only (127.0.0.0/8, ::1, localhost)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
