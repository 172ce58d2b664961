"""The ``wslocust serve`` command: its options, and running the server until SIGTERM or SIGINT."""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from collections.abc import Callable
from typing import Any

import gevent

from ..arguments import CommandLineParser
from ..exceptions import ConfigurationError
from ..gc_freeze import FREEZER
from .config import CONTROL_TOKEN_ENV, FIELD_CHECKS, HANDSHAKE_TIMEOUT_ENV, ServerConfig
from .listener import raise_open_files_limit
from .reference import create_server

__all__ = ["SERVE_DESCRIPTION", "add_arguments", "build_parser", "main", "run"]


#: What ``wslocust serve`` does, for its --help and the ``wslocust`` command list.
SERVE_DESCRIPTION = "Run the reference WebSocket echo server; its /stats counters are exact."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``serve`` options to ``parser``; each is validated as it is parsed."""
    defaults = ServerConfig()
    listening = parser.add_argument_group("listening")
    listening.add_argument(
        "--host",
        type=_cli_type("host"),
        default=defaults.host,
        help="address to listen on (default: %(default)s; 0.0.0.0 to accept remote clients)",
    )
    listening.add_argument(
        "--port",
        type=_cli_type("port"),
        default=defaults.port,
        help="TCP port, 0 = any free one (default: %(default)s)",
    )
    listening.add_argument(
        "--path",
        type=_cli_type("path"),
        default=defaults.path,
        help="WebSocket path (default: %(default)s)",
    )
    listening.add_argument(
        "--reuse-port",
        action="store_true",
        help="set SO_REUSEPORT so several server processes can share the port (each keeps its own /stats)",
    )
    listening.add_argument("--certfile", metavar="PEM", help="certificate chain: serve wss:// instead of ws://")
    listening.add_argument("--keyfile", metavar="PEM", help="private key of --certfile, if not inside it")
    limits = parser.add_argument_group("limits and control")
    limits.add_argument(
        "--max-message-size",
        type=_cli_type("max_message_size"),
        default=defaults.max_message_size,
        metavar="BYTES",
        help="largest message accepted, all its fragments together; a larger one closes the connection "
        "with 1009 and counts in messages_too_big (default: %(default)s)",
    )
    limits.add_argument(
        "--handshake-timeout",
        type=_cli_type("handshake_timeout", HANDSHAKE_TIMEOUT_ENV),
        default=os.environ.get(HANDSHAKE_TIMEOUT_ENV) or defaults.handshake_timeout,
        metavar="SECONDS",
        help=f"close a connection that has not sent a complete request (its upgrade, a GET /stats...) this "
        f"many seconds after it was accepted or answered; never an open WebSocket. Also {HANDSHAKE_TIMEOUT_ENV} "
        "(default: %(default)s)",
    )
    limits.add_argument(
        "--control-token",
        type=_cli_type("control_token", CONTROL_TOKEN_ENV),
        default=os.environ.get(CONTROL_TOKEN_ENV) or None,
        metavar="TOKEN",
        help=f"token that POST /faults must send as 'Authorization: Bearer TOKEN'; better given as "
        f"{CONTROL_TOKEN_ENV}, which other users of this host cannot read. Default: none on loopback; "
        "beyond loopback, a random token printed at start",
    )
    behaviour = parser.add_argument_group("behaviour")
    behaviour.add_argument(
        "--delay-ms",
        type=_cli_type("delay_ms"),
        default=defaults.delay_ms,
        help="delay each echo by this many ms (default: %(default)s)",
    )
    behaviour.add_argument(
        "--broadcast-interval-ms",
        type=_cli_type("broadcast_interval_ms"),
        default=defaults.broadcast_interval_ms,
        help='send {"broadcast": <n>, "sent_at": <epoch s>} to every open connection every this many ms, '
        "0 = off (default: %(default)s)",
    )
    faults = parser.add_argument_group("faults")
    faults.add_argument(
        "--close-after",
        type=_cli_type("close_after"),
        default=defaults.close_after,
        help="close each connection after it received this many messages, 0 = never (default: %(default)s)",
    )
    faults.add_argument(
        "--close-code",
        type=_cli_type("close_code"),
        default=defaults.close_code,
        help="close code for --close-after; 1006 drops TCP without a close frame (default: %(default)s)",
    )
    faults.add_argument(
        "--refuse-fraction",
        type=_cli_type("refuse_fraction"),
        default=defaults.refuse_fraction,
        help="answer this fraction of upgrades with 503, deterministically (default: %(default)s)",
    )


def _cli_type(field: str, env: str | None = None) -> Callable[[str], Any]:
    # The option is checked as ServerConfig checks the field, and reports a bad value the same way.
    check = FIELD_CHECKS[field]

    def parse(text: str) -> Any:
        try:
            return check(text)
        except ValueError as exc:
            # argparse also checks a default given by the environment: say where the value came from.
            where = f" (from {env})" if env is not None and os.environ.get(env) == text else ""
            # ArgumentTypeError keeps our message; a ValueError would be replaced by argparse's.
            raise argparse.ArgumentTypeError(f"{exc}{where}") from None

    return parse


def run(args: argparse.Namespace) -> int:
    """
    Run the server for parsed ``serve`` options until SIGTERM or SIGINT.

    Prints the listening line (then the control token, if one was generated),
    then, after draining, the final statistics as one line of JSON. Returns the
    exit code: 0, or 1 if it cannot listen.
    """
    config = ServerConfig(
        **{name: getattr(args, name) for name in FIELD_CHECKS}, certfile=args.certfile, keyfile=args.keyfile
    )
    raise_open_files_limit()
    server = create_server(config)
    try:
        server.start()
    except (OSError, ConfigurationError) as exc:
        problem = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        print(
            f"wslocust serve: error: cannot listen on {config.host}:{config.port}: {problem}",
            file=sys.stderr,
        )
        return 1
    # gevent runs each handler in a new greenlet, where stop() may wait for the drain.
    handlers = [gevent.signal_handler(signum, server.stop) for signum in (signal.SIGTERM, signal.SIGINT)]
    print(
        f"wslocust reference server listening on {server.url} (stats at {server.stats_url})",
        flush=True,
    )
    if server.control_token_generated:
        # Beyond loopback anyone may reach POST /faults: only holders of this token can use it.
        print(
            f"control token (POST /faults needs 'Authorization: Bearer <token>'): {server.control_token} "
            f"(generated; choose one with --control-token or {CONTROL_TOKEN_ENV})",
            flush=True,
        )
    # The process is the server's alone: its connections' objects out of the collector's full passes.
    freezer = gevent.spawn(FREEZER.look_forever, "connections", lambda: server.counters.connections_open, gevent.sleep)
    try:
        server.serve_forever()
    finally:
        freezer.kill()
        for handler in handlers:
            handler.cancel()
    print(json.dumps(server.stats()), flush=True)
    return 0


def build_parser() -> argparse.ArgumentParser:
    """Return the parser of ``wslocust serve`` on its own."""
    parser = CommandLineParser(prog="wslocust serve", description=SERVE_DESCRIPTION)
    add_arguments(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run ``wslocust serve`` with ``argv`` (default: ``sys.argv[1:]``); return the exit code."""
    return run(build_parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
