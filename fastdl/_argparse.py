"""What every ``fastdl`` command's parser shares: help that shows each flag's default.

The conventions of the commands (``fastdl``, ``fastdl train``, ``fastdl experiment``,
``fastdl bench``): a usage error prints that command's usage and exits 2; a run-time
failure prints one line ``<command>: error: ...`` and exits 1, never a traceback.
"""

import argparse
import sys

__all__ = ["HelpFormatter", "parse_args", "usage_error", "positive_int", "nonnegative_int", "fraction"]


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """argparse's default-showing help, less the defaults that say nothing (None, False,
    an empty list: an unset option, an off switch, nothing appended yet) and those the
    help text already states."""

    def _get_help_string(self, action):
        text = action.help or ""
        if "default" in text or action.default is None or action.default is False or action.default == []:
            return text
        return super()._get_help_string(action)


def parse_args(parser, argv):
    """(parser.parse_args(argv), None), or (None, the exit status) where argparse ends the
    command itself: 0 after --help or --version, 2 after a usage error (its usage and the
    message printed on stderr). The commands' main() return that status, so that called
    from Python they return rather than raise SystemExit."""
    try:
        return parser.parse_args(argv), None
    except SystemExit as e:
        return None, e.code if isinstance(e.code, int) else 2


def usage_error(parser, message):
    """The exit status of a usage error found after parsing: prints the parser's usage
    and ``prog: error: message`` on stderr, as argparse does, and returns 2."""
    parser.print_usage(sys.stderr)
    print(f"{parser.prog}: error: {message}", file=sys.stderr)
    return 2


def _int_at_least(minimum, what, name):
    """An argparse type: an integer >= minimum; its errors say it is `what`."""
    def parse(text):
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected {what}, got {value}")
        return value

    parse.__name__ = parse.__qualname__ = name
    parse.__doc__ = f"argparse type: an integer >= {minimum}."
    return parse


positive_int = _int_at_least(1, "a positive integer", "positive_int")
nonnegative_int = _int_at_least(0, "an integer >= 0", "nonnegative_int")


def fraction(low_closed=True, high_closed=False):
    """argparse type: a float in [0, 1) (or the interval the flags say)."""
    interval = f"{'[' if low_closed else '('}0, 1{']' if high_closed else ')'}"

    def parse(text):
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number in {interval}, got {text!r}") from None
        inside = (value >= 0 if low_closed else value > 0) and (value <= 1 if high_closed else value < 1)
        if not inside:
            raise argparse.ArgumentTypeError(f"expected a number in {interval}, got {value:g}")
        return value

    parse.__name__ = "fraction"  # argparse names the type in its "invalid ... value" message
    return parse
