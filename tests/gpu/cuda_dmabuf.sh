#!/bin/sh
# Builds libtensorbuf (unless BUILD_DIR already holds it) and the CUDA
# dma-buf import test, then runs the test. Needs a C compiler, and CMake and
# GLib's headers when it builds the library; needs no CUDA toolkit (libcuda
# is loaded at run time). Exit status: the test's (0 passed, 1 failed, 77
# skipped with the reason on stderr).
#   tests/gpu/cuda_dmabuf.sh            # builds into build-gpu/
#   BUILD_DIR=build-img tests/gpu/cuda_dmabuf.sh
set -eu
root=$(cd "$(dirname "$0")/../.." && pwd)
build=${BUILD_DIR:-$root/build-gpu}
case $build in /*) ;; *) build=$root/$build ;; esac

if [ ! -e "$build/capi/libtensorbuf.so" ]; then
  cmake -S "$root" -B "$build" -DTB_BUILD_TESTS=OFF -DTB_BUILD_BENCH=OFF \
    -DTB_BUILD_BINDINGS=OFF >/dev/null
  cmake --build "$build" --target tensorbuf -j "$(nproc)" >/dev/null
fi
cc -std=c11 -Wall -Wextra -Werror -D_GNU_SOURCE -I"$root/capi/include" \
  "$root/tests/gpu/cuda_dmabuf.c" -o "$build/cuda_dmabuf" \
  -L"$build/capi" -ltensorbuf -ldl -Wl,-rpath,"$build/capi"
exec "$build/cuda_dmabuf"
