"""The ``albatross`` command: argument parsing and the exit code of each run. No domain logic here."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence

from albatross import commands, serving_commands
from albatross.exit_codes import EXIT_INTERRUPTED, exit_code_for
from indexer.errors import AlbatrossError
from indexer.version import installed_version

log = logging.getLogger("albatross")


def configure_logging(*, verbose: bool) -> None:
    """Our own messages at INFO (DEBUG with -v); libraries' chatter only from WARNING up."""
    logging.basicConfig(
        level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    for name in ("albatross", "indexer", "searcher"):
        logging.getLogger(name).setLevel(logging.DEBUG if verbose else logging.INFO)
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()  # one "Loading weights" bar per model is noise here
    # Load reports shown: a weight missing from an operator's model folder is a real problem. The
    # ones we expect are avoided where they arise (the encoder builds no pooler its weights lack,
    # the topic classifier is assembled without from_pretrained), so none is shown for nothing.
    transformers_logging.set_verbosity_warning()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="albatross", description="Albatross semantic search.")
    parser.add_argument("--version", action="version", version=f"albatross {installed_version()}")
    sub = parser.add_subparsers(dest="command", required=True)
    for register in (*commands.REGISTRY, *serving_commands.REGISTRY):
        register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    configure_logging(verbose=getattr(args, "verbose", False))
    run: Callable[[argparse.Namespace], int] = args.run
    try:
        return run(args)
    except AlbatrossError as error:
        print(f"albatross {args.command}: {error}", file=sys.stderr)
        return exit_code_for(error)
    except KeyboardInterrupt:
        print(f"albatross {args.command}: interrupted; everything acknowledged is committed", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as error:  # a bug: one line for the operator, the traceback with -v
        log.debug("traceback of the internal error", exc_info=error)
        hint = " (run again with -v for the traceback)" if getattr(args, "verbose", None) is False else ""
        print(
            f"albatross {args.command}: internal error: {type(error).__name__}: {error}{hint}",
            file=sys.stderr,
        )
        return exit_code_for(error)


if __name__ == "__main__":
    sys.exit(main())
