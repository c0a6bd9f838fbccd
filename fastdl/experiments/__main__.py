"""python -m fastdl.experiments NAME ... (the same as ``fastdl experiment NAME ...``)."""

import sys

from fastdl.experiments import main

if __name__ == "__main__":
    sys.exit(main())
