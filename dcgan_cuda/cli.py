"""What every command line of the project shares: a parser whose mistakes are one line, and
the checks that a value must pass wherever it comes from.

A value reaches a tool in three ways: a flag, an environment variable, or the metadata of
a file the tool reads (a checkpoint records the flags of the run that wrote it). Each kind
of value is checked once, by the functions below, whichever way it arrives, so a value
that a flag refuses is refused in a checkpoint too, with the same words.

Errors a user can cause are reported as one line, ``error: ...`` on stderr, and exit
status 2; a Python traceback means a bug in the project, never a bad input.
"""
from __future__ import annotations

import argparse
import functools
import math
import os
import re
import sys

# Upper limits on sizes. Below them a model or a batch may still not fit a machine's
# memory (then the tools say so); above them it fits none: at ngf 1024 and 64x64 images
# the generator alone has 0.7 billion weights, 11 GB with its Adam moments and gradients.
MAX_WIDTH = 1024            # --ngf, --ndf
MAX_LATENT = 10_000         # --nz: 100 times the paper's
MAX_SEED = 2**32 - 1        # seeds: the range NumPy's legacy seeding and most users know
MAX_COUNT = 10**9           # counts of images, iterations, repetitions: anything larger is a typo
MAX_SCALE = 32              # enlargement of pictures
LAUNCH_PATHS = ("direct", "numba")   # DCGAN_CUDA_LAUNCH (kernels/jit.py reads it)


class UsageError(ValueError):
    """A flag, an environment variable or a value recorded in a file is not acceptable;
    the message names it and the value."""


# A help text that already states its default: "(default: 32 for digits, 64 otherwise)",
# "(default 64)", "default: all", "kernels as pytorch/examples (default);".
STATES_DEFAULT = re.compile(r"\(default\b|\bdefault:|\bdefault \d")


def shown_default(action):
    """The text of ``action``'s default for --help, or None where there is nothing true to
    show: no default (None: the tool decides, and the help says how), an on/off flag, an
    empty value, a required argument, or a help text that states the default itself."""
    default, help_text = action.default, action.help or ""
    if (help_text == argparse.SUPPRESS or default is None or default is argparse.SUPPRESS
            or action.required or action.nargs == 0 or (not action.option_strings
                                                        and action.nargs not in ("?", "*"))
            or "%(default)" in help_text or STATES_DEFAULT.search(help_text)):
        return None
    if isinstance(default, (list, tuple)):
        default = " ".join(map(str, default))
    default = str(default)
    return default if default.strip() else None


class HelpFormatter(argparse.HelpFormatter):
    """Every flag's default in --help once, as "(default: X)", and only where it is true:
    argparse's ArgumentDefaultsHelpFormatter also prints "(default: None)" for a value the
    tool works out later and repeats a default the help text already gives."""

    def _get_help_string(self, action):
        help_text = action.help or ""
        default = shown_default(action)
        if default is None:
            return help_text
        # argparse %-formats help texts: a literal % in the value must be doubled.
        return (help_text + " " if help_text else "") + f"(default: {default.replace('%', '%%')})"


class Parser(argparse.ArgumentParser):
    """argparse, except that a mistake raises UsageError (one line, reported by the tool's
    main like every other bad input) instead of printing the whole usage and exiting; and
    --help shows each default once (HelpFormatter)."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message):
        raise UsageError(f"{message} (see {self.prog} --help)")

    def parse_known_args(self, args=None, namespace=None):
        args = sys.argv[1:] if args is None else list(args)
        # argparse drops a value of "--" given as --flag=-- and sets the flag to [] without
        # calling its type: refuse it here instead.
        for arg in args:
            if arg.startswith("-") and arg.endswith("=--"):
                self.error(f"argument {arg[:-3]}: expected a value, got '--'")
        return super().parse_known_args(args, namespace)


def _describe(minimum, maximum, low_open=False, high_open=False):
    if minimum is not None and maximum is not None and not (low_open or high_open):
        return f"from {minimum} to {maximum}"
    low = None if minimum is None else f"{'>' if low_open else '>='} {minimum}"
    high = None if maximum is None else f"{'<' if high_open else '<='} {maximum}"
    return " and ".join(part for part in (low, high) if part)


def integer(minimum=None, maximum=None):
    """An argparse type: a whole number in [minimum, maximum] (None: no bound)."""
    def convert(text):
        try:
            value = int(str(text).strip(), 10)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
            raise argparse.ArgumentTypeError(f"must be a whole number {_describe(minimum, maximum)}, "
                                             f"got {text!r}")
        return value
    convert.__name__ = "integer"  # argparse names the type in some messages
    return convert


def real(minimum=None, maximum=None, low_open=False, high_open=False):
    """An argparse type: a finite number in the interval (bounds open where asked).
    nan, inf and numbers too large for a float are refused here, before anything runs."""
    def convert(text):
        try:
            value = float(str(text).strip())
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"must be a finite number, got {text!r}")
        if (minimum is not None and (value < minimum or (low_open and value == minimum))) or \
                (maximum is not None and (value > maximum or (high_open and value == maximum))):
            raise argparse.ArgumentTypeError(
                f"must be a number {_describe(minimum, maximum, low_open, high_open)}, got {text!r}")
        return value
    convert.__name__ = "real"
    return convert


def path(text):
    """An argparse type: a non-empty path (an empty one would silently mean the current
    folder or nothing at all)."""
    if not str(text).strip():
        raise argparse.ArgumentTypeError("expected a path, got an empty string")
    return str(text)


def output_file(text):
    """An argparse type: a file to write (not an existing folder)."""
    text = path(text)
    if os.path.isdir(text):
        raise argparse.ArgumentTypeError(f"{text} is a folder; expected a file name")
    return text


def number_list(text, what, convert):
    """'0.1, 1e-3' -> [0.1, 0.001], each through ``convert`` (an argparse type above)."""
    items = [t for t in str(text).replace(" ", "").split(",") if t != ""]
    if not items:
        raise UsageError(f"{what}: no values given")
    try:
        return [convert(t) for t in items]
    except argparse.ArgumentTypeError as exc:
        raise UsageError(f"{what}: {exc}") from None


def check_environment():
    """Refuse environment settings the project reads and a user can mistype."""
    launch = os.environ.get("DCGAN_CUDA_LAUNCH")
    if launch is not None and launch not in LAUNCH_PATHS:
        raise UsageError(f"DCGAN_CUDA_LAUNCH={launch!r}: expected one of {', '.join(LAUNCH_PATHS)} "
                         "(or leave it unset)")


def out_of_memory(exc, what="the sizes asked for"):
    """The one line for a MemoryError (host or GPU): which sizes to make smaller."""
    detail = str(exc).strip() or type(exc).__name__
    return f"out of memory with {what} ({detail}); choose smaller sizes"


def reports_errors(*known):
    """Decorator for a script's main(argv): a UsageError, a MemoryError or an error of the
    ``known`` types (the script's own bad-input errors) ends it with one line on stderr and
    exit status 2. Anything else is a bug and keeps its traceback."""
    def wrap(main):
        @functools.wraps(main)
        def run(argv=None):
            try:
                check_environment()
                return main(argv)
            except (UsageError, *known) as exc:
                print(f"error: {exc}", file=sys.stderr)
                return 2
            except MemoryError as exc:
                print("error: " + out_of_memory(exc), file=sys.stderr)
                return 2
        return run
    return wrap
