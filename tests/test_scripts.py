"""The scripts under scripts/ (benchmarks and the tools that made the bundled models) still
import what they use: a module that moves must not leave a script behind. Each is loaded
as a module, without running its main, in one interpreter."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"

_LOAD_ALL = """
import runpy, sys
failed = []
for path in sys.argv[1:]:
    sys.path.insert(0, {scripts!r})
    try:
        runpy.run_path(path, run_name="script_under_test")
    except Exception as e:
        failed.append(f"{{path}}: {{type(e).__name__}}: {{e}}")
print("\\n".join(failed))
sys.exit(1 if failed else 0)
"""


def test_every_script_imports_what_it_uses():
    scripts = sorted(str(p) for p in SCRIPTS.glob("*.py"))
    assert len(scripts) > 10
    done = subprocess.run([sys.executable, "-c", _LOAD_ALL.format(scripts=str(SCRIPTS)), *scripts],
                          capture_output=True, text=True, timeout=300, cwd=SCRIPTS.parent)
    assert done.returncode == 0, done.stdout + done.stderr
