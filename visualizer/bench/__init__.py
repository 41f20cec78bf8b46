"""The benchmarks behind ``fmviz bench``: fmviz side by side with torchvision and Captum.

``engine`` times the analysis, Grad-CAM, rendering and writing (P1–P4b, P8) and ``memory``
the peak memory (P9); ``startup`` launches the app (P5–P7). Not part of the engine itself.
"""
