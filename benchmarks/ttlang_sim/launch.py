"""Run one of the tt-lang scripts in this folder under tt-lang-sim's own interpreter (its own
process: tt-lang-sim rebinds torch's bf16 for the whole process) and read its JSON line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path


def run_ttlang_script(python: str, script: str, args: list[str], timeout: int) -> dict | None:
    """The last JSON line `script` prints, or None (with the reason on stderr) if it failed."""
    cmd = [python, str(Path(__file__).parent / script), *args]
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=True).stdout
        return json.loads(out.strip().splitlines()[-1])
    except (subprocess.SubprocessError, json.JSONDecodeError, IndexError) as e:
        print(f"tt-lang-sim run failed ({script} {' '.join(args)}): {e}", file=sys.stderr)
        return None
