"""The README's Python example runs as written after a bare ``import edwidgets``."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_python_example_runs_in_a_fresh_interpreter():
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    assert blocks, "README has no ```python example"
    code = blocks[0] + "\nassert len(df) > 5 and df['intensity'].sum() > 0\nassert F.shape == (2,)\n"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
