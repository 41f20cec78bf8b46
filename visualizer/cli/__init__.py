"""The ``fmviz`` command line: the window's launcher, and ``info``, ``export``, ``bench`` and
``index``.

One module per command (``window``, ``info``, ``export``, ``bench``, ``index``), each with
``add_parser`` and ``run``; ``options`` holds what they share. Exit status: 0 everything done;
1 something failed (one ``error: …`` line each on stderr, the rest still done); 2 bad usage.
A user's mistake never ends in a traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from visualizer.cli import bench, export, index, info, window
from visualizer.cli.options import error

COMMANDS = {"info": info, "export": export, "bench": bench, "index": index}


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``fmviz``; returns the exit status (0 done, 1 failed, 2 bad usage)."""
    words = list(sys.argv[1:] if argv is None else argv)
    # `fmviz [IMAGE ...] [options]` opens the window; `fmviz COMMAND ...` runs a command.
    parser = _parser() if words and words[0] in COMMANDS else window.parser()
    args = parser.parse_args(words)
    try:
        return args.run(args)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # e.g. `fmviz bench | head`: the reader has gone, nothing to say
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except Exception as failure:
        if os.environ.get("FMVIZ_DEBUG"):
            raise
        # A last resort: what the commands do not expect is still one line, not a traceback.
        reason = " ".join(str(failure).split())[:300]
        error(f"unexpected {type(failure).__name__}: {reason} (FMVIZ_DEBUG=1 shows where)")
        return 1


def _parser() -> argparse.ArgumentParser:
    from visualizer import __version__  # noqa: PLC0415

    parser = argparse.ArgumentParser(
        prog="fmviz", description="Look inside VGG16 and ResNet101, stage by stage."
    )
    parser.add_argument("--version", action="version", version=f"fmviz {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in COMMANDS.values():
        module.add_parser(commands)
    return parser
