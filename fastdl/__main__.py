"""`python -m fastdl`: the ``fastdl`` command (fastdl.cli). With no subcommand it prints
what this installation runs on and checks one fused kernel; ``python -m fastdl train``
trains an MLP; ``--cmake-dir | --include-dir | --lib-dir`` print where the installed
C++ package lives (docs/cpp.md)."""

from fastdl.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
