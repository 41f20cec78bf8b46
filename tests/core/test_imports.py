"""The core stands without Qt, and the command line starts without the heavy libraries."""

from __future__ import annotations

from collections.abc import Callable

QT_MODULES = ("PySide6", "shiboken6", "pyqtgraph", "PyQt5", "PyQt6")


def test_the_core_imports_no_qt(modules_after: Callable[[str], set[str]]) -> None:
    loaded = modules_after(
        "import visualizer.core, visualizer.core.render, visualizer.core.export, "
        "visualizer.core.figure, visualizer.bench.engine, visualizer.cli.export, visualizer.folders"
    )
    assert "visualizer.core.analysis" in loaded
    assert not {name for name in loaded if name.split(".")[0] in QT_MODULES}


def test_the_command_line_loads_neither_torch_nor_qt_before_it_is_needed(
    modules_after: Callable[[str], set[str]],
) -> None:
    loaded = modules_after("import visualizer.cli")
    assert "visualizer.cli" in loaded
    assert not {name for name in loaded if name.split(".")[0] in {"torch", *QT_MODULES}}
