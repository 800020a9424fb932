#!/bin/sh
# Makes a self-contained tensorbuf Python package for one interpreter in OUT
# (default BUILD_DIR/gpu-python): the package's .py files, SWIG's proxy
# module and _tensorbuf_core<EXT_SUFFIX>, compiled from the C file SWIG
# generated here and linked statically with libtensorbuf.a, and the shared
# libraries libtensorbuf needs beyond libc (GLib, json-glib, theirs; Debian
# ships no static json-glib) in tensorbuf/_libs, which the module finds
# through its RPATH: it needs nothing else at run time. (SWIG 4.1 cannot make
# limited-API "abi3" modules, so a module serves one Python minor version.)
#
#   tests/gpu/build_python_module.sh BUILD_DIR [PYTHON]
#
# Where BUILD_DIR holds a build with the Python binding (bindings/python/swig
# has SWIG's output), it first copies the inputs into OUT/src: the wrapper C
# file, the proxy module, libtensorbuf.a and GLib's static archives. Where it
# does not (a machine that only got OUT carried over), it builds from OUT/src.
# Either way it compiles for PYTHON (default python3) unless OUT already has
# that interpreter's module, which needs a C compiler and the interpreter's
# headers (Python.h); then it imports the package as a check.
#
# For the GPU machine (Python 3.12, no apt), prebuild here with pyenv's 3.12,
# whose headers this machine has, and carry BUILD_DIR/gpu-python:
#   tests/gpu/build_python_module.sh build-py ~/.pyenv/versions/3.12.1/bin/python3
set -eu
if [ $# -lt 1 ] || [ $# -gt 2 ]; then
  echo "usage: $0 BUILD_DIR [PYTHON]" >&2
  exit 2
fi
root=$(cd "$(dirname "$0")/../.." && pwd)
build=$1
case $build in /*) ;; *) build=$root/$build ;; esac
python=${2:-python3}
out=${OUT:-$build/gpu-python}
src=$out/src
package=$out/tensorbuf

# ---- bundle the inputs (on the machine that built the binding) ----------------
wrapper=$build/bindings/python/swig/tensorbufPYTHON_wrap.c
if [ -f "$wrapper" ]; then
  mkdir -p "$src"
  cp "$wrapper" "$src/tensorbuf_python_wrap.c"
  cp "$build/bindings/python/tensorbuf/tensorbuf_core.py" "$src/"
  cp "$build/capi/libtensorbuf.a" "$src/"
  rm -rf "$src/libs"
  mkdir -p "$src/libs"
  ldd "$build/capi/libtensorbuf.so" | awk '$3 ~ /^\// { print $3 }' |
    grep -v -E '/(libc|libm)\.so' | while read -r library; do
      cp -L "$library" "$src/libs/"
    done
fi
for input in tensorbuf_python_wrap.c tensorbuf_core.py libtensorbuf.a \
             libs/libglib-2.0.so.0; do
  if [ ! -f "$src/$input" ]; then
    echo "FAIL: $src/$input is missing: build the Python binding in BUILD_DIR" \
         "first, or carry a BUILD_DIR/gpu-python made by this script" >&2
    exit 1
  fi
done

# ---- the package ---------------------------------------------------------------
mkdir -p "$package/_libs"
cp "$root"/bindings/python/tensorbuf/*.py "$src/tensorbuf_core.py" "$package/"
cp "$src"/libs/* "$package/_libs/"
if ! suffix=$("$python" -c \
    'import sysconfig; print(sysconfig.get_config_var("EXT_SUFFIX"))'); then
  echo "FAIL: cannot run $python" >&2
  exit 1
fi
module=$package/_tensorbuf_core$suffix
if [ -f "$module" ] && [ "$module" -nt "$src/tensorbuf_python_wrap.c" ] &&
   [ "$module" -nt "$src/libtensorbuf.a" ]; then
  echo "$module is up to date"
else
  include=$("$python" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')
  if [ ! -f "$include/Python.h" ]; then
    echo "FAIL: $python has no headers ($include/Python.h): prebuild the module" \
         "for it on a machine that has them and carry $out" >&2
    exit 1
  fi
  cc=${CC:-cc}
  if ! command -v "$cc" >/dev/null; then
    echo "FAIL: no C compiler ($cc) to build $module" >&2
    exit 1
  fi
  # SWIG's functions take a `self` they do not use. An old-style RPATH
  # (not RUNPATH) also serves the bundled libraries' own dependencies.
  "$cc" -shared -fPIC -O2 -Wall -Wno-unused-parameter \
    -I"$include" -I"$root/capi/include" "$src/tensorbuf_python_wrap.c" \
    -o "$module" "$src/libtensorbuf.a" "$src"/libs/libjson-glib-1.0.so.* \
    "$src"/libs/libgobject-2.0.so.* "$src"/libs/libglib-2.0.so.* \
    -Wl,--disable-new-dtags,-rpath,'$ORIGIN/_libs' -lm -pthread
  echo "built $module"
fi

# ---- check ---------------------------------------------------------------------
PYTHONPATH=$out "$python" -c '
import sys, tensorbuf
t = tensorbuf.Tensor((2, 3), "f32")
t[1, 2] = 3.5
assert t[1, 2] == 3.5
print("PASS import tensorbuf", tensorbuf.__version__, "with Python",
      sys.version.split()[0], "from", tensorbuf.__file__)
'
