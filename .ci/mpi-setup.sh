#!/usr/bin/env bash
# CI: an MPI launcher and library for tests/test_distributed.py. Installs Debian's Open
# MPI (openmpi-bin, libopenmpi-dev: mpirun and the headers mpi4py builds against) when
# no mpirun is on PATH; does nothing otherwise. mpi4py itself is the `mpi` extra.
# Needs root (or sudo) on Debian/Ubuntu; elsewhere it says what is missing and fails.
set -euo pipefail

if command -v mpirun >/dev/null 2>&1 || command -v mpiexec >/dev/null 2>&1; then
  echo "mpi-setup: $(command -v mpirun || command -v mpiexec) already present"
  exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "mpi-setup: no mpirun and no apt-get; install Open MPI or MPICH by hand" >&2
  exit 1
fi
sudo=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then sudo="sudo"; else
    echo "mpi-setup: installing Open MPI needs root" >&2
    exit 1
  fi
fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -q
$sudo apt-get install -y -q --no-install-recommends openmpi-bin libopenmpi-dev
mpirun --version | head -n 1
