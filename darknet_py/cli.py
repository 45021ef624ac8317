"""``darknet-py``: command-line verbs in the forms Darknet users type."""
from __future__ import annotations

import argparse
import logging
import sys

from .errors import DarknetError


def cmd_summary(args):
    from .model import Darknet
    from .summary import layer_table
    net = Darknet(args.cfg, width=args.width, height=args.height, init=False)
    print(layer_table(net))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="darknet-py", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="log diagnostics")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("summary", help="print Darknet's layer table and total BFLOPs of a cfg")
    p.add_argument("cfg")
    p.add_argument("--width", type=int, help="override [net] width")
    p.add_argument("--height", type=int, help="override [net] height")
    p.set_defaults(func=cmd_summary)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s: %(message)s")
    try:
        args.func(args)
    except DarknetError as e:
        print(f"darknet-py: error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
