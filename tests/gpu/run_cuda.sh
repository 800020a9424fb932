#!/bin/sh
# Runs the CUDA GPU tests on a machine with an NVIDIA GPU: the C tests
# (tests/gpu/cuda_memory.c, cuda_fence.c, cuda_channel.c) as
# tests/gpu/build_static.sh linked them into BUILD_DIR/gpu-bin, then the
# Python test with the package tests/gpu/build_python_module.sh made.
#   tests/gpu/run_cuda.sh BUILD_DIR [PACKAGE_DIR]
# Runs every one, each for at most 300 s (rc 124: it hung). Exit status: 0 all passed, 1 a failure, 77 all skipped
# (no GPU).
set -u
root=$(cd "$(dirname "$0")/../.." && pwd)
build=${1:?usage: $0 BUILD_DIR [PACKAGE_DIR]}
package=${2:-$build/gpu-python}
failed=0
passed=0
for program in cuda_memory cuda_fence cuda_channel python_cuda; do
  echo "== $program"
  rc=0
  if [ $program = python_cuda ]; then
    timeout 300 python3 "$root/tests/gpu/python_cuda.py" "$package" || rc=$?
  else
    timeout 300 "$build/gpu-bin/$program" || rc=$?
  fi
  echo "rc=$rc"
  case $rc in
    0) passed=$((passed + 1)) ;;
    77) ;;
    *) failed=$((failed + 1)) ;;
  esac
done
[ $failed -eq 0 ] || exit 1
[ $passed -gt 0 ] || exit 77
exit 0
