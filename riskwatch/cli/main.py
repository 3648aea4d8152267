"""The ``riskwatch`` command line (README.md#commands).

Exit statuses: ``run`` 0 after a clean shutdown, 2 on a bad config at start;
``check`` 0 valid, 1 invalid; ``demo`` and ``sim`` 0. Problems in files are printed
to stderr as ``FILE:LINE:COL: message``, one per line (docs/design.md#precise-points).

Each subcommand's module is imported only when it runs, so ``--help`` is instant and
a command never pays for another's imports.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from riskwatch import __version__
from riskwatch.durations import Duration, duration_argument, seconds_argument
from riskwatch.logformat import setup_logging

EXIT_OK = 0
EXIT_INVALID = 1
EXIT_CONFIG = 2


def _cmd_run(args: argparse.Namespace) -> int:
    from riskwatch.daemon.serve import run_daemon
    from riskwatch.shard import ALL, parse_shard

    return run_daemon(
        Path(args.config),
        record=Path(args.record) if args.record else None,
        shard=parse_shard(args.shard) if args.shard else ALL,
    )


def _shard_arg(text: str) -> str:
    """Validate ``--shard I/N`` at parse time (argparse reports the error, exit 2)."""
    from riskwatch.shard import parse_shard

    try:
        parse_shard(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def _cmd_check(args: argparse.Namespace) -> int:
    from riskwatch.cli.check import check

    return check(Path(args.config))


def _cmd_test(args: argparse.Namespace) -> int:
    from riskwatch.offline.ruletest import run_tests

    return run_tests(args.files)


def _cmd_replay(args: argparse.Namespace) -> int:
    from riskwatch.offline.replay import run_replay

    return run_replay(Path(args.recording), Path(args.config), as_json=args.json, tick=args.tick)


def _cmd_demo(args: argparse.Namespace) -> int:
    from riskwatch.cli.demo import run_demo

    return run_demo(
        scenario=args.scenario,
        speed=args.speed,
        duration=args.duration,
        port=args.port,
        live=None if args.live is None else args.live == "yes",
    )


def _cmd_sim(args: argparse.Namespace) -> int:
    from riskwatch.cli import sim as command

    return command.run(args)


def _cmd_notify_test(args: argparse.Namespace) -> int:
    from riskwatch.cli.notify_test import run_notify_test

    return run_notify_test(Path(args.config))


def _cmd_control(args: argparse.Namespace) -> int:
    from riskwatch.cli.control import run_control

    return run_control(
        args.command,
        url=args.url,
        token_file=Path(args.token_file) if getattr(args, "token_file", None) else None,
        account=getattr(args, "account", None),
        rule=getattr(args, "rule", None),
        symbol=getattr(args, "symbol", None),
        limit=getattr(args, "limit", 50),
    )


def _cmd_silence(args: argparse.Namespace) -> int:
    from riskwatch.cli.silence import run_silence

    return run_silence(
        args.silence_command,
        config_path=Path(args.config) if args.config else None,
        url=args.url,
        matchers=getattr(args, "matchers", None),
        duration=str(getattr(args, "duration", "1h")),
        author=getattr(args, "author", None),
        comment=getattr(args, "comment", ""),
        silence_id=getattr(args, "id", None),
    )


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every subcommand."""
    parser = argparse.ArgumentParser(
        prog="riskwatch",
        description="Risk monitoring, alerting and protection for QFEX accounts.",
    )
    parser.add_argument("--version", action="version", version=f"riskwatch {__version__}")
    parser.add_argument(
        "--log-level", default="info", choices=["debug", "info", "warning", "error"]
    )
    parser.add_argument(
        "--log-format",
        default="text",
        choices=["text", "json"],
        help="text lines, or one JSON object per line for log pipelines (docs/logging.md)",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("run", help="run the daemon")
    p.add_argument("-c", "--config", required=True, help="path to riskwatch.yaml")
    p.add_argument(
        "--record",
        metavar="FILE",
        help="append every received exchange frame, and the daemon's ticks and link drops "
        "(what replay needs to decide as the daemon did), to FILE (JSON lines)",
    )
    p.add_argument(
        "--shard",
        type=_shard_arg,
        help="watch only shard I of N of the accounts (I from 0, e.g. 0/3; hash of the name)",
    )
    p.set_defaults(func=_cmd_run)

    p = sub.add_parser("check", help="validate the config and every rule file")
    p.add_argument("-c", "--config", required=True, help="path to riskwatch.yaml")
    p.set_defaults(func=_cmd_check)

    p = sub.add_parser("test", help="run rule unit tests (like promtool test rules)")
    p.add_argument("files", nargs="+", metavar="TESTS.yaml", help="rule test files")
    p.set_defaults(func=_cmd_test)

    p = sub.add_parser("replay", help="run the rules over a recording, sending nothing")
    p.add_argument("recording", metavar="RECORDING", help="JSONL file from run --record")
    p.add_argument("-c", "--config", required=True, help="path to riskwatch.yaml")
    p.add_argument("--json", action="store_true", help="print the timeline as one JSON document")
    p.add_argument(
        "--tick",
        type=seconds_argument,
        default=0.25,
        metavar="DURATION",
        help="time between rule ticks for a recording without tick lines (default 250ms)",
    )
    p.set_defaults(func=_cmd_replay)

    p = sub.add_parser("demo", help="run the simulator and the daemon against it, live")
    p.add_argument("--scenario", default="crash", help="scenario name or file (default: crash)")
    p.add_argument("--speed", type=float, default=1.0, help="scenario time per wall second")
    p.add_argument(
        "--duration",
        type=seconds_argument,
        default=None,
        metavar="DURATION",
        help="stop after this long (wall time, e.g. 90s)",
    )
    p.add_argument("--port", type=int, default=9464, help="HTTP port of the daemon (0: any)")
    p.add_argument(
        "--live",
        choices=["yes", "no"],
        default=None,
        help="redraw a live view (default: when stdout is a terminal)",
    )
    p.set_defaults(func=_cmd_demo)

    p = sub.add_parser("sim", help="run the QFEX exchange simulator alone")
    from riskwatch.cli import sim as sim_command

    sim_command.configure_parser(p)
    p.set_defaults(func=_cmd_sim)

    p = sub.add_parser("notify-test", help="send one test notification to every route")
    p.add_argument("-c", "--config", required=True, help="path to riskwatch.yaml")
    p.set_defaults(func=_cmd_notify_test)

    p = sub.add_parser("silence", help="add, list or expire silences of a running daemon")
    silence = p.add_subparsers(dest="silence_command", required=True, metavar="ACTION")
    for name, text in (
        ("add", "silence alerts matching MATCHER… (e.g. rule=~Margin.* account=desk-a)"),
        ("list", "list the silences"),
        ("expire", "end a silence now"),
    ):
        sp = silence.add_parser(name, help=text)
        sp.add_argument("-c", "--config", help="riskwatch.yaml (address and admin token)")
        sp.add_argument("--url", help="daemon base URL (default: from the config's http.listen)")
        if name == "add":
            sp.add_argument("matchers", nargs="+", metavar="MATCHER")
            sp.add_argument(
                "--duration",
                type=duration_argument,
                default=Duration(3_600_000),
                metavar="DURATION",
                help="how long (default 1h)",
            )
            sp.add_argument("--author", help="who (default: $USER)")
            sp.add_argument("--comment", default="", help="why")
        if name == "expire":
            sp.add_argument("id", help="silence id")
    p.set_defaults(func=_cmd_silence)

    for name, text in (
        ("arm", "arm protective actions of a running daemon (clears the kill switch)"),
        ("disarm", "kill switch: disarm every protective action of a running daemon"),
        ("latch-reset", "reset latched rules of an account on a running daemon"),
        ("actions", "print the action audit log of a running daemon, newest first"),
    ):
        p = sub.add_parser(name, help=text)
        p.add_argument("--url", help="daemon base URL (default http://127.0.0.1:9464)")
        if name != "actions":
            p.add_argument("--token-file", help="file holding the admin token")
        if name == "latch-reset":
            p.add_argument("--account", required=True)
            p.add_argument("--rule", help="rule name (default: every latch of the account)")
            p.add_argument("--symbol", help="symbol (position-scope rules)")
        if name == "actions":
            p.add_argument("--limit", type=int, default=50)
        p.set_defaults(func=_cmd_control)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``riskwatch`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    setup_logging(args.log_level, args.log_format)
    result: int = args.func(args)
    return result


if __name__ == "__main__":
    raise SystemExit(main())
