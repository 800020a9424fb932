"""The README's Python example runs as written and prints what its
"# -> ..." comments say."""

import os
import re
import subprocess
import sys

import pytest

import tensorbuf

README = os.path.join(os.path.dirname(__file__), "..", "..", "..", "README.md")


def example():
    with open(README, encoding="utf-8") as file:
        text = file.read()
    section = text[text.index("\n## Python\n"):]
    section = section[:section.index("\n## ", 1)]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_readme_example_prints_what_it_says():
    if not tensorbuf.memory_available("shm"):
        pytest.skip("the example uses shared memory")
    pytest.importorskip("numpy")
    code = example()
    expected = re.findall(r"#\s*->\s*(.*)$", code, re.M)
    assert len(expected) >= 5
    done = subprocess.run([sys.executable, "-c", code], capture_output=True,
                          text=True, timeout=60,
                          env=dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path)))
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [line.rstrip() for line in expected]
