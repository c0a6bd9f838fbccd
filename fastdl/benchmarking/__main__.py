"""`python -m fastdl.benchmarking ...` is `fastdl bench ...`."""

import sys

from .cli import main
from .idle_threads import restart_with_quiet_blas

if __name__ == "__main__":
    restart_with_quiet_blas(["fastdl.benchmarking", *sys.argv[1:]])
    sys.exit(main(prog="python -m fastdl.benchmarking"))
