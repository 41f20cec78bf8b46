"""The window tests' fixtures for this folder's window tests: ``tests/ui/conftest.py``,
imported once more (a conftest's fixtures reach only its own folder).

Windows on the session's shared random-weight networks, the offscreen screen of tests/ui, and
the autouse check that no worker thread, QThread or dialog is left after a test. A test module
imports the names it uses.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType


def _window_fixtures() -> ModuleType:
    name = "fmviz_tests_ui_fixtures"
    if name not in sys.modules:
        path = Path(__file__).resolve().parents[1] / "ui" / "conftest.py"
        spec = importlib.util.spec_from_file_location(name, path)
        assert spec is not None
        assert spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


_ui = _window_fixtures()
qapp_args = _ui.qapp_args
settings_path = _ui.settings_path
dialogs = _ui.dialogs
_nothing_left_running = _ui._nothing_left_running
open_window = _ui.open_window
shown_after = _ui.shown_after
analyzer_of = _ui.analyzer_of
