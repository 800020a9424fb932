#!/bin/sh
# Runs the CUDA GPU tests on a machine with an NVIDIA GPU: the C test
# (tests/gpu/cuda_memory.c) against BUILD_DIR's libtensorbuf, then the
# Python test with the package tests/gpu/build_python_module.sh made.
#   tests/gpu/run_cuda.sh BUILD_DIR [PACKAGE_DIR]
# Exit status: 0 all passed, 1 a failure, 77 all skipped (no GPU).
set -u
root=$(cd "$(dirname "$0")/../.." && pwd)
build=${1:?usage: $0 BUILD_DIR [PACKAGE_DIR]}
package=${2:-$build/gpu-python}
status=0
"$build/tests/gpu/cuda_memory" || status=$?
[ $status -eq 0 ] || [ $status -eq 77 ] || exit 1
python3 "$root/tests/gpu/python_cuda.py" "$package"; py=$?
[ $py -eq 0 ] || [ $py -eq 77 ] || exit 1
[ $status -eq 77 ] && [ $py -eq 77 ] && exit 77
exit 0
