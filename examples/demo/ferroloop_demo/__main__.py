"""`python -m ferroloop_demo [options]`: the demo's command (`./dev demo` runs it)."""

import argparse
import sys

from .args import add_arguments
from .main import run


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m ferroloop_demo")
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
