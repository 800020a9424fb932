#!/bin/sh
# The ctest package.readme_examples (label package, `./run package`):
# unpacks every .deb of PACKAGES_DIR into a scratch root with dpkg -x, then
# builds and runs the README's C example with `pkg-config --cflags --libs
# tensorbuf` as the README gives it, and runs its Lua and Python examples
# (checking what they print against the README), each against that root
# alone: nothing from the build tree, nothing installed on the system.
#
# usage: check_debs.sh PACKAGES_DIR SCRATCH_DIR SOURCE_DIR MULTIARCH
set -eu
packages=$1 scratch=$2 source=$3 multiarch=$4
root=$scratch/root
set -- "$packages"/*.deb
[ -e "$1" ] || { echo "no .deb in $packages: run cpack first (./run package)"; exit 1; }
rm -rf "$root" && mkdir -p "$root"
for deb in "$@"; do
  echo "unpacking $(basename "$deb")"
  dpkg -x "$deb" "$root"
done
libdir=$root/usr/lib/$multiarch
# The packages put the library in the loader's own directory, which this
# root is not: LD_LIBRARY_PATH stands in for it.
export LD_LIBRARY_PATH="$libdir"
export PKG_CONFIG_PATH="$libdir/pkgconfig" PKG_CONFIG_LIBDIR="$libdir/pkgconfig"

echo "C: cc app.c \$(pkg-config --cflags --libs tensorbuf)"
cflags_libs=$(pkg-config --cflags --libs tensorbuf)
case "$cflags_libs" in *glib*) echo "pkg-config names GLib: $cflags_libs"; exit 1 ;; esac
# shellcheck disable=SC2086 # word splitting is the point
cc "$source/examples/readme_example.c" $cflags_libs -o "$scratch/readme_example"
"$scratch/readme_example"
ldd "$scratch/readme_example" | grep -q "$libdir/libtensorbuf.so.0" ||
  { echo "readme_example did not load the packaged library"; ldd "$scratch/readme_example"; exit 1; }

echo "Lua: the README's example"
LUA_CPATH="$libdir/lua/5.4/?.so" LUA_PATH="$root/usr/share/lua/5.4/?.lua;$source/bindings/lua/tests/?.lua" \
  lua5.4 "$source/bindings/lua/tests/test_readme.lua" "$source/README.md" "$source/bindings/lua/example.lua"

echo "Python: the README's example"
PYTHONPATH="$root/usr/lib/python3/dist-packages" /usr/bin/python3 -c \
  "import tensorbuf, sys; assert tensorbuf.__file__.startswith(sys.argv[1]), tensorbuf.__file__" "$root"
PYTHONPATH="$root/usr/lib/python3/dist-packages" /usr/bin/python3 -m pytest -q -p no:cacheprovider \
  "$source/bindings/python/tests/test_readme.py"
echo "the README's C, Lua and Python examples ran against the packages alone"
