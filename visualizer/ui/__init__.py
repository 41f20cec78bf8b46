"""fmviz's desktop app: PySide6 and pyqtgraph, no model logic (that is `visualizer.core`).

`app.run` opens the window; `main_window.MainWindow` is the window; `worker.Worker` runs the
core's work off the event loop; `jobs` is that work, as plain data in and out.
"""
