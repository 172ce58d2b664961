"""
The benchmark suite's entry point: ``python -m benchmarks NAME [options]``.

NAME is one of the workloads (``throughput``, ``hold-10k``, ``connect-rate``,
``latency-error``, ``hold-50k``, ``scaling``, ``peers``, ``compression``, ``codec``) or
``all`` (``throughput``, ``hold-10k``, ``connect-rate``, ``latency-error`` and ``scaling``
with their defaults, in that order; ``hold-50k`` too with ``--include-50k``).
``python -m benchmarks NAME --help`` lists a workload's options.

Each workload prints a table and one ``RESULT {json}`` line per result on
stdout; progress and warnings go to stderr. Every child process is stopped at
the end, on errors, Ctrl-C and SIGTERM too. Exit code: 0, 1 if a run failed,
2 for bad options, 130 when interrupted.
"""

from __future__ import annotations

import argparse
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path
from types import ModuleType
from typing import Any

from .measure import Context
from .processes import log, plan_pinning, raise_open_files_limit, set_logs_directory, stop_all_children
from .workloads import codec, compression, connect_rate, hold, hold_50k, latency_error, peers, scaling, throughput

__all__ = ["WORKLOADS", "main"]

WORKLOADS: dict[str, ModuleType] = {
    "throughput": throughput,
    "hold-10k": hold,
    "connect-rate": connect_rate,
    "latency-error": latency_error,
    "hold-50k": hold_50k,
    "scaling": scaling,
    "peers": peers,
    "compression": compression,
    "codec": codec,
}
"""Each module has ``add_arguments(parser)``, ``run(args, context) -> results`` and its docstring as help."""
IN_ALL = ("throughput", "hold-10k", "connect-rate", "latency-error", "scaling")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks", description=__doc__.split("\n\n")[0], formatter_class=_Formatter
    )
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--logs", type=Path, metavar="DIR", help="keep each generator's and server's output in DIR (default: none)"
    )
    names = parser.add_subparsers(dest="name", required=True, metavar="NAME")
    for name, module in WORKLOADS.items():
        summary = (module.__doc__ or "").strip().split("\n\n")[0].split(": ", 1)[-1]
        sub = names.add_parser(
            name,
            help=summary.replace("\n", " "),
            description=module.__doc__,
            formatter_class=_Formatter,
            parents=[common],
        )
        module.add_arguments(sub)
    every = names.add_parser(
        "all", help="every workload with its defaults (< 15 minutes)", formatter_class=_Formatter, parents=[common]
    )
    every.add_argument("--include-50k", action="store_true", help="also run hold-50k (about 5 more minutes)")
    return parser


class _Formatter(argparse.RawDescriptionHelpFormatter):
    pass


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.name != "all":
        _check(parser, WORKLOADS[args.name], args)
    return args


def _check(parser: argparse.ArgumentParser, module: ModuleType, args: argparse.Namespace) -> None:
    """Validate the options every workload shares; one line naming the bad value and what is valid."""
    if hasattr(args, "variants") and isinstance(args.variants, str):
        variants = [v.strip() for v in args.variants.split(",") if v.strip()]
        unknown = [v for v in variants if v not in module.VARIANTS]
        if unknown or not variants:
            parser.error(
                f"--variants: {', '.join(unknown) or '(none)'} not valid; choose from {', '.join(module.VARIANTS)}"
            )
        args.variants = variants
    for name in ("duration", "hold", "connections", "size", "rounds", "interval", "spawn_rate", "rate", "servers"):
        value = getattr(args, name, None)
        if value is not None and value <= 0:
            parser.error(f"--{name.replace('_', '-')}: {value!r} is not valid; it must be > 0")
    for name in ("warmup", "settle", "hold_ms"):
        value = getattr(args, name, None)
        if value is not None and value < 0:
            parser.error(f"--{name.replace('_', '-')}: {value!r} is not valid; it must be >= 0")


def _terminate(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _terminate)
    raise_open_files_limit()
    workdir = Path(tempfile.mkdtemp(prefix="wslocust-benchmarks-"))
    if args.logs is not None:
        args.logs.mkdir(parents=True, exist_ok=True)
    context = Context(plan_pinning(), workdir)
    set_logs_directory(args.logs)
    failed = False
    started = time.monotonic()
    try:
        if args.name == "all":
            names = [*IN_ALL, *(["hold-50k"] if args.include_50k else [])]
            parser = build_parser()
            for name in names:
                log(f"all: {name} ({time.monotonic() - started:.0f} s so far)")
                workload_args = parser.parse_args([name])
                _check(parser, WORKLOADS[name], workload_args)
                failed |= _run(WORKLOADS[name], workload_args, context)
        else:
            failed = _run(WORKLOADS[args.name], args, context)
    except KeyboardInterrupt:
        log("interrupted: stopping every child process")
        return 130
    finally:
        stop_all_children()
        shutil.rmtree(workdir, ignore_errors=True)
    log(f"done in {time.monotonic() - started:.0f} s")
    return 1 if failed else 0


def _run(module: ModuleType, args: argparse.Namespace, context: Context) -> bool:
    """Run one workload; True if a run of it failed."""
    try:
        results = module.run(args, context)
    except RuntimeError as exc:
        log(f"{args.name} FAILED: {exc}")
        return True
    return any("error" in result for result in results)


if __name__ == "__main__":
    sys.exit(main())
