#!/usr/bin/env bash
# The README's test command, as a script so the README and CI run the same thing.
# Run it inside a fresh virtual environment: it installs fastdl with its test extra
# (and the CPU build of PyTorch for the parity tests), then runs pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
python -m pip install --quiet ".[test]" "torch==2.13.0"
# From outside the source tree, so the tests import the installed package.
cd tests
set +e
python -m pytest -q -p no:cacheprovider .
rc=$?
set -e
# pytest exits 5 when no test ran: that is a failure here too.
if [ "$rc" -eq 5 ]; then echo "no tests ran" >&2; exit 1; fi
exit "$rc"
