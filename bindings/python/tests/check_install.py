"""Installs the runtime and python components into a scratch prefix and
imports tensorbuf from there, as a user of the installed tree would.

Usage: check_install.py CMAKE BUILD_DIR PREFIX PYTHON_INSTALL_DIR
(PYTHON_INSTALL_DIR relative to the prefix, as TB_PYTHON_INSTALL_DIR is by
default.)
"""

import os
import shutil
import subprocess
import sys
import tempfile

CHECK = r"""
import sys, numpy, tensorbuf
assert tensorbuf.__file__.startswith(sys.argv[1]), tensorbuf.__file__
t = tensorbuf.Tensor((2, 3), dtype="f32", memory="shm", name="installed")
t[1, 2] = 3.5
assert numpy.from_dlpack(t)[1, 2] == 3.5 and numpy.asarray(t)[1, 2] == 3.5
print(tensorbuf.__version__, tensorbuf.__file__)
"""


def main(cmake, build_dir, prefix, python_dir):
    shutil.rmtree(prefix, ignore_errors=True)
    for component in ("runtime", "python"):
        subprocess.run([cmake, "--install", build_dir, "--prefix", prefix,
                        "--component", component], check=True)
    site = os.path.join(prefix, python_dir)
    environment = {key: value for key, value in os.environ.items()
                   if key not in ("PYTHONPATH", "LD_LIBRARY_PATH")}
    environment["PYTHONPATH"] = site
    with tempfile.TemporaryDirectory() as elsewhere:  # not the build tree
        done = subprocess.run([sys.executable, "-c", CHECK, site],
                              cwd=elsewhere, env=environment)
    return done.returncode


if __name__ == "__main__":
    if len(sys.argv) != 5:
        sys.exit(__doc__)
    sys.exit(main(*sys.argv[1:]))
