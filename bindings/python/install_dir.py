"""Prints where, relative to an install prefix, this interpreter imports
packages from: the CMake install puts the tensorbuf package there.

Usage: python3 install_dir.py PREFIX

An import directory of this interpreter that lies under PREFIX wins, so that
the installed package needs no PYTHONPATH (Debian's python3 reads
/usr/local/lib/python3.X/dist-packages, not the site-packages that the
posix_prefix scheme names). Otherwise the scheme's platlib under PREFIX,
which the user adds to PYTHONPATH.
"""

import os
import sys
import sysconfig


def install_dir(prefix):
    prefix = os.path.abspath(prefix)
    for entry in sys.path:
        entry = os.path.abspath(entry) if entry else ""
        if entry.startswith(prefix + os.sep) and os.path.basename(entry) in (
            "site-packages",
            "dist-packages",
        ):
            return os.path.relpath(entry, prefix)
    platlib = sysconfig.get_path(
        "platlib", "posix_prefix", vars={"platbase": prefix, "base": prefix}
    )
    return os.path.relpath(platlib, prefix)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: install_dir.py PREFIX")
    print(install_dir(sys.argv[1]))
