"""The attribution methods side by side: each map, area and curve is the engine's; slow methods
show their progress, stop when cancelled or overtaken, and leave nothing on the network; the
event loop keeps running meanwhile.

The windows run the session's random ResNet101 on 64×64 inputs (``small_window``), with small
parameters, so that every method takes milliseconds; a slow method is made slow on purpose
(Integrated Gradients, one step a pass, 300 steps: a few seconds of Captum's set-up for a thousand).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
from PIL import Image
from PySide6.QtCore import Qt, QTimer

from visualizer.ui.method_jobs import (
    DEFAULT_METHODS,
    LAYER_METHODS,
    METHOD_TITLES,
    METHODS,
    MethodSettings,
)

SAMPLES = Path(__file__).resolve().parents[2] / "assets" / "samples"
CHELSEA = str(SAMPLES / "chelsea.jpg")
QUICK = {"integrated-gradients": {"n_steps": 2, "internal_batch_size": 2}}
STEPS = 4  # points on the deletion and insertion curves after the first
SLOW = {"integrated-gradients": {"n_steps": 300, "internal_batch_size": 1}}  # 300 passes
TIMEOUT_MS = 60_000


def references(analyzer, result, method: str, target: int | None, parameters: dict):
    """The engine's attribution and faithfulness for ``method``, called directly."""
    layer = "C5" if method in LAYER_METHODS else None
    attribution = analyzer.attribute(result, method, target, layer, **parameters.get(method, {}))
    return attribution, analyzer.faithfulness(result, attribution, steps=STEPS)


def hooks_left(model) -> list[str]:
    """The modules of ``model`` with a hook on them."""
    kinds = ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks")
    return [
        f"{name or 'model'}.{kind}"
        for name, module in model.named_modules()
        for kind in kinds
        if getattr(module, kind, None)
    ]


def test_the_windows_methods_are_those_the_engine_runs() -> None:
    from visualizer.core import attribution_methods

    assert tuple(attribution_methods.DEFAULTS) == METHODS
    assert set(METHOD_TITLES) == set(METHODS)
    assert set(LAYER_METHODS) <= set(METHODS)


def test_methods_side_by_side_show_the_engines_maps_curves_and_areas(
    small_window, small_analyzer, qtbot, tmp_path, monkeypatch
) -> None:
    window = small_window([CHELSEA])
    window.set_method_settings(MethodSettings.of(QUICK, steps=STEPS))
    panel = window.methods
    assert panel.ticked() == DEFAULT_METHODS
    assert not panel.busy()  # nothing runs while the tab is not shown
    window.methods_action.trigger()  # View → Attribution methods (Ctrl+M)
    assert window.views.currentWidget() is panel
    qtbot.waitUntil(
        lambda: tuple(panel.shown()) == DEFAULT_METHODS and window.idle(), timeout=TIMEOUT_MS
    )

    result = small_analyzer.analyze(CHELSEA)
    target = result.topk[0][0]
    assert window.data.target == target
    assert f"Explaining <b>{target} " in panel.note.text()
    for index, method in enumerate(DEFAULT_METHODS):
        attribution, curves = references(small_analyzer, result, method, None, QUICK)
        cell = panel.cells[method]
        assert panel.grid.getItemPosition(panel.grid.indexOf(cell))[:2] == (0, index)
        np.testing.assert_allclose(np.asarray(cell.heat.image), attribution.map, atol=1e-6)
        np.testing.assert_array_equal(np.asarray(cell.picture.image), np.asarray(result.view))
        title = METHOD_TITLES[method] + (" at C5" if method in LAYER_METHODS else "")
        assert cell.title.text() == f"<b>{title}</b>"
        text = cell.aucs.text()
        assert f"deletion AUC <b>{curves.deletion_auc:.4f}</b>" in text
        assert f"insertion AUC <b>{curves.insertion_auc:.4f}</b>" in text
        for line, expected in (
            (cell.deletion, curves.deletion),
            (cell.insertion, curves.insertion),
        ):
            x, y = line.getData()
            np.testing.assert_allclose(x, curves.fractions)
            np.testing.assert_allclose(y, expected, atol=1e-6)
    assert "n_steps=2" in panel.cells["integrated-gradients"].parameters.text()

    # Export figure: the methods shown, their areas, as one PNG.
    path = tmp_path / "methods.png"
    monkeypatch.setattr(window, "ask_export_path", lambda what, _name: str(path))
    qtbot.mouseClick(panel.export, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: path.is_file() and window.idle(), timeout=TIMEOUT_MS)
    with Image.open(path) as figure:
        text = dict(figure.text)
    assert text["methods"] == ",".join(DEFAULT_METHODS)
    areas = {row["method"]: row["deletion_auc"] for row in json.loads(text["attributions"])}
    assert areas == {m: panel.shown()[m].deletion_auc for m in DEFAULT_METHODS}


def test_the_map_beside_the_grid_can_be_any_method(small_window, small_analyzer, shown_after):
    window = small_window([CHELSEA])
    window.set_method_settings(MethodSettings.of(QUICK, steps=STEPS))
    combo = window.cam.controls.method
    data = shown_after(window, lambda: combo.setCurrentIndex(combo.findData("saliency")))
    result = small_analyzer.analyze(CHELSEA)
    attribution, _ = references(small_analyzer, result, "saliency", None, QUICK)
    np.testing.assert_allclose(data.cam, attribution.map, atol=1e-6)
    np.testing.assert_allclose(np.asarray(window.cam.heat.image), attribution.map, atol=1e-6)
    assert window.cam.title.text().startswith(f"Saliency of <b>{data.target} ")
    assert not window.cam.stage.isEnabled()  # Saliency attributes at the input
    data = shown_after(window, lambda: window.set_options(target=3))
    attribution, _ = references(small_analyzer, result, "saliency", 3, QUICK)
    np.testing.assert_allclose(data.cam, attribution.map, atol=1e-6)


def test_cancel_stops_a_slow_method_at_once_and_leaves_no_hook(
    small_window, small_analyzer, qtbot, shown_after
) -> None:
    model = small_analyzer.model
    relus = [m.inplace for m in model.modules() if hasattr(m, "inplace")]
    window = small_window([CHELSEA])
    window.set_method_settings(MethodSettings.of(SLOW, steps=STEPS))
    panel = window.methods
    panel.set_methods(["integrated-gradients"])
    steps: list[tuple[str, int, int]] = []
    window.worker.stepped.connect(
        lambda kind, _g, done, total, _w: steps.append((kind, done, total))
    )
    ticks: list[float] = []
    heartbeat = QTimer()
    heartbeat.setInterval(10)
    heartbeat.timeout.connect(lambda: ticks.append(time.perf_counter()))
    heartbeat.start()
    start = time.perf_counter()
    window.show_methods()
    cell = panel.cells["integrated-gradients"]
    qtbot.waitUntil(lambda: cell.progress.value() >= 3, timeout=TIMEOUT_MS)
    assert steps[-1][0] == "method"
    assert cell.progress.isVisible()
    assert cell.progress.maximum() == 300  # one pass a step
    assert "Integrated Gradients: pass" in cell.status.text()
    assert panel.cancel_button.isEnabled()

    qtbot.mouseClick(panel.cancel_button, Qt.MouseButton.LeftButton)
    cancelled = time.perf_counter()
    assert "cancelled" in cell.status.text()
    data = shown_after(window, lambda: window.show_stage("C3"))  # the worker's next job runs
    shown = time.perf_counter()
    heartbeat.stop()
    assert data.grid_name == "C3"
    assert shown - cancelled < 10, "the method ran on after Cancel"
    qtbot.waitUntil(window.idle, timeout=TIMEOUT_MS)
    passes = len(steps)
    assert steps[-1][1] < 300
    assert panel.shown() == {}
    assert not panel.busy()
    assert panel.compute.isEnabled()
    assert "press Compute" in cell.status.text()
    qtbot.wait(200)
    assert len(steps) == passes  # no pass after it stopped
    assert hooks_left(model) == []
    assert [m.inplace for m in model.modules() if hasattr(m, "inplace")] == relus
    during = [tick for tick in ticks if start <= tick <= shown]
    gaps = np.diff([start, *during, shown])
    assert gaps.max() < 0.5, f"the event loop stalled for {gaps.max():.2f} s"


def test_a_newer_request_overtakes_the_method_running(
    small_window, small_analyzer, qtbot, shown_after
) -> None:
    # The references first: the network runs one thing at a time, and a slow method is coming.
    result = small_analyzer.analyze(CHELSEA)
    first = result.topk[0][0]
    other = (first + 1) % 1000
    attribution, _ = references(small_analyzer, result, "saliency", other, SLOW)
    window = small_window([CHELSEA])
    window.set_method_settings(MethodSettings.of(SLOW, steps=STEPS))
    panel = window.methods
    panel.set_methods(["saliency", "integrated-gradients"])
    replies = []
    window.worker.replied.connect(lambda reply: reply.kind == "method" and replies.append(reply))
    window.show_methods()
    assert window.data.target == first
    qtbot.waitUntil(
        lambda: panel.cells["integrated-gradients"].progress.value() >= 2, timeout=TIMEOUT_MS
    )
    assert tuple(panel.shown()) == ("saliency",)
    running = panel.running
    panel.boxes["occlusion"].setChecked(True)  # one more: queued, the one running goes on
    assert panel.running is running
    panel.boxes["occlusion"].setChecked(False)
    assert panel.running is running

    asked = time.perf_counter()
    data = shown_after(window, lambda: window.set_options(target=other))  # another class
    assert time.perf_counter() - asked < 10, "the view waited for the method overtaken"
    assert data.target == other
    qtbot.waitUntil(lambda: "saliency" in panel.shown(), timeout=TIMEOUT_MS)
    np.testing.assert_allclose(
        np.asarray(panel.cells["saliency"].heat.image), attribution.map, atol=1e-6
    )
    qtbot.waitUntil(lambda: panel.running is not None, timeout=TIMEOUT_MS)
    assert (panel.running.method, panel.running.target) == ("integrated-gradients", other)

    panel.boxes["integrated-gradients"].setChecked(False)  # another set of methods
    qtbot.waitUntil(window.idle, timeout=TIMEOUT_MS)
    assert list(panel.cells) == ["saliency"]
    assert not panel.busy()
    slow = [reply for reply in replies if reply.context.method == "integrated-gradients"]
    # The first was overtaken mid-run; the second was stopped by the unticking, running or
    # still queued (then dropped unanswered): which of the two depends on the worker's timing.
    targets = [reply.context.target for reply in slow]
    assert targets[0] == first
    assert targets[1:] in ([], [other])
    assert all(reply.skipped for reply in slow)  # none ran to the end
    assert hooks_left(small_analyzer.model) == []


def test_a_method_that_fails_says_why_and_the_others_go_on(small_window, qtbot) -> None:
    window = small_window([CHELSEA])
    window.set_method_settings(MethodSettings.of({**QUICK, "saliency": {"no_such": 1}}, steps=2))
    panel = window.methods
    panel.set_methods(["saliency", "integrated-gradients"])
    window.show_methods()
    qtbot.waitUntil(lambda: not panel.busy() and window.idle(), timeout=TIMEOUT_MS)
    assert tuple(panel.shown()) == ("integrated-gradients",)
    assert "failed:" in panel.cells["saliency"].status.text()
    assert "no_such" in panel.cells["saliency"].status.text()
    [error] = window.errors.messages
    assert error.startswith("Saliency: ")
    assert "no_such" in error
