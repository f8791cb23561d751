"""`import modelhost` and the CLI stay light: the ML and web stacks load on first use."""

from __future__ import annotations

import subprocess
import sys

HEAVY = ("pandas", "sklearn", "pandera", "fastapi", "onnxruntime", "skops")


def test_importing_modelhost_and_its_cli_loads_no_heavy_library() -> None:
    code = ("import sys, modelhost, modelhost.cli; "
            f"print(','.join(sorted(m for m in {HEAVY!r} if m in sys.modules)))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True, timeout=120)
    assert result.stdout.strip() == ""


def test_lazy_names_still_resolve() -> None:
    import modelhost
    import modelhost.signature as signatures

    assert callable(modelhost.infer_signature)
    assert signatures.InputValidator.__name__ == "InputValidator"
