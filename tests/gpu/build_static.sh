#!/bin/sh
# Links the GPU test and benchmark programs statically with libtensorbuf.a
# and GLib into OUT (default BUILD_DIR/gpu-bin), for the GPU machine, which
# has no GLib: they need nothing there but libc (and the CUDA driver, which
# tensorbuf loads at run time).
#   tests/gpu/build_static.sh BUILD_DIR
# Carry BUILD_DIR/gpu-bin and run the programs from it (run_cuda.sh finds
# them there).
set -eu
root=$(cd "$(dirname "$0")/../.." && pwd)
build=${1:?usage: $0 BUILD_DIR}
case $build in /*) ;; *) build=$root/$build ;; esac
out=${OUT:-$build/gpu-bin}
mkdir -p "$out"
glib=$(pkg-config --variable=libdir glib-2.0)
for program in tests/gpu/cuda_memory tests/gpu/cuda_fence \
               tests/gpu/cuda_channel bench/gpu/cuda_handoff; do
  ${CC:-cc} -O2 -Wall -Wextra -Werror -D_GNU_SOURCE -I"$root/capi/include" \
    "$root/$program.c" -o "$out/$(basename "$program")" \
    "$build/capi/libtensorbuf.a" "$glib/libglib-2.0.a" "$glib/libpcre2-8.a" \
    -ldl -lm -pthread
done
echo "built $(ls "$out" | tr '\n' ' ')in $out"
