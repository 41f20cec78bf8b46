"""The models package stands alone and starts fast."""

from __future__ import annotations

from collections.abc import Callable


def test_models_imports_nothing_from_the_app_nor_torchvision(
    modules_after: Callable[[str], set[str]],
) -> None:
    loaded = modules_after("import models")
    assert "models.vgg" in loaded
    assert not {name for name in loaded if name.split(".")[0] in {"visualizer", "torchvision"}}
    assert not {name for name in loaded if name.startswith(("PySide6", "captum", "pyqtgraph"))}
