"""fmviz's desktop app: PySide6 and pyqtgraph, no model logic (that is `visualizer.core`).

`app.run` opens the window; `main_window.MainWindow` is the window; `worker.Worker` runs the
core's work off the event loop; `jobs` is that work, as plain data in and out, and
`method_jobs` what the attribution methods ask of it. The views: `grid_view` (a stage's or a
layer's channels), `cam_panel` (the map of a class and the predictions), `methods_panel` (the
attribution methods side by side), `layer_tree` (every feature layer), `timing_panel`,
`channel_view`, `compare_view`.
"""
