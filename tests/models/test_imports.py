"""The models package stands alone and starts fast."""

from __future__ import annotations

import subprocess
import sys


def _modules_after(statement: str) -> set[str]:
    code = f"{statement}; import sys; print('\\n'.join(sys.modules))"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    return set(result.stdout.split())


def test_models_imports_nothing_from_the_app_nor_torchvision() -> None:
    loaded = _modules_after("import models")
    assert "models.vgg" in loaded
    assert not {name for name in loaded if name.split(".")[0] in {"visualizer", "torchvision"}}
    assert not {name for name in loaded if name.startswith(("PySide6", "captum", "pyqtgraph"))}
