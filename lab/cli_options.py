"""Command-line pieces shared by the offline tools (`python -m trainer`, `quantize`, `fleet`).

They live in `lab`, the package all three import: the shift options name the evaluations of
`lab.shift`, and each tool's entry point parses and starts logging the same way.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

#: The trainer's and fleet's log line; quantize adds the logger's name.
LOG_FORMAT = "%(asctime)s %(levelname)s %(message)s"
#: --log-level's choices, as the kiosk's `pneumoedge --log-level` has them.
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Every default in --help, except None: the option's help says what happens then."""

    def _get_help_string(self, action: argparse.Action) -> str:
        if action.default is None or action.required:
            return action.help or ""
        return super()._get_help_string(action)


def parse_command(
    prog: str,
    description: str | None,
    adders: Iterable[Callable[[argparse._SubParsersAction], None]],
    argv: Sequence[str] | None,
    log_format: str = LOG_FORMAT,
) -> argparse.Namespace:
    """Parse `prog [--log-level LEVEL] COMMAND ...` and start logging, so every tool's main reads alike.

    `prog` is the console script's name (pyproject.toml), so usage lines name what a user types.
    """
    parser = argparse.ArgumentParser(
        prog=prog, description=description, formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    parser.add_argument("--log-level", default="INFO", choices=LOG_LEVELS, help="log verbosity")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in adders:
        add(commands)
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level, format=log_format)
    return args


def run_command(args: argparse.Namespace, errors: tuple[type[Exception], ...]) -> int:
    """Run the parsed command; `errors`, what a user causes and can fix (a missing folder, a refused
    export), end it with one line `COMMAND: why` and exit status 1 instead of a traceback."""
    try:
        return int(args.func(args) or 0)
    except errors as e:
        sys.exit(f"{args.command}: {e}")


def add_command(
    commands: argparse._SubParsersAction,
    name: str,
    summary: str,
    func: Callable[[argparse.Namespace], int],
    description: str | None = None,
    formatter_class: type[argparse.HelpFormatter] = argparse.ArgumentDefaultsHelpFormatter,
) -> argparse.ArgumentParser:
    """A subcommand that runs `func` (read back as `args.func`), its defaults shown in --help."""
    parser = commands.add_parser(name, help=summary, description=description, formatter_class=formatter_class)
    parser.set_defaults(func=func)
    return parser


def add_shift_options(
    parser: argparse.ArgumentParser,
    fullres_help: str,
    suite_help: str,
    fullres_copies_help: str | None = None,
) -> None:
    """--site, --fullres (and --fullres-copies) and --suite-films: the inputs of `lab.shift`'s checks.

    One definition keeps their names, types and defaults the same in `trainer evaluate` and
    `quantize benchmark`; only the help differs, where the two commands read the films differently.
    """
    parser.add_argument(
        "--site",
        type=Path,
        default=None,
        help="new-cohort films (NORMAL/, PNEUMONIA/), e.g. site-calibration",
    )
    parser.add_argument("--fullres", type=Path, default=None, help=fullres_help)
    if fullres_copies_help is not None:
        parser.add_argument("--fullres-copies", type=Path, default=None, help=fullres_copies_help)
    parser.add_argument("--suite-films", type=int, default=0, help=suite_help)
