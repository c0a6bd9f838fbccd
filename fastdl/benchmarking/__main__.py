"""`python -m fastdl.benchmarking ...` is `fastdl bench ...`."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main(prog="python -m fastdl.benchmarking"))
