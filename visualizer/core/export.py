"""Writing results to files: tile grids and Grad-CAM overlays as PNG (raw, and annotated
figures on request), timings as CSV.

All of an export's files or none. Each file is written to a temporary name in the same folder
(`WriteBatch`); only when every one is written are they renamed into place, one after the
other. A failure while writing (a full disk, an interruption) removes the temporaries: the
folder is as it was, and files the export would have replaced keep their old content. A
failure while renaming (rare: a folder or a locked file in the way) takes back the files
already renamed and puts the old ones back (kept meanwhile under a second name, a hard link;
where the file system has no hard links, a replaced file is removed rather than restored). A
reader never sees half a file. PNGs carry their provenance as text chunks and are compressed
at zlib level 1 (grids are palette images, one byte a pixel).
"""

from __future__ import annotations

import contextlib
import csv
import functools
import io
import json
import os
import secrets
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING

from PIL import Image, PngImagePlugin

from models import STAGE_NAMES
from visualizer import __version__
from visualizer.core.analysis import DEFAULT_CAM_STAGE, AnalysisResult, Analyzer
from visualizer.core.attribution import GradCam
from visualizer.core.attribution_methods import LAYER_METHODS, PAPERS, TITLES
from visualizer.core.faithfulness import DEFAULT_STEPS
from visualizer.core.figure import (
    MAP_WORDS,
    activation,
    attribution_figure,
    figure_info,
    grid_figure,
    overlay_figure,
)
from visualizer.core.methods_figure import methods_figure
from visualizer.core.render import ORDERS, SCALES, Grid, overlay, render_grid
from visualizer.core.timing import Timing

if TYPE_CHECKING:
    from visualizer.core.attribution_methods import Attribution
    from visualizer.core.faithfulness import Faithfulness

# Output names add up to 35 bytes to an image's stem ("_resnet101_gradcam_C5_annotated.png"),
# and their temporary names 15 more (".", ".1a2b3c4d.part"): longer stems are cut
# (fitting_stem), so that every name fits the 255 bytes a file system allows in one.
MAX_STEM_BYTES = 200
PNG_COMPRESS_LEVEL = 1  # zlib's fastest: 2× faster than the default for 5–10 % more bytes
GRADCAM_METHOD = (
    "Grad-CAM: Captum LayerGradCam (relu_attributions=True), bilinear upsampling "
    "(align_corners=False), min–max scaled to [0, 1]"
)


@dataclass(frozen=True)
class ExportOptions:
    """What ``export_result`` writes, and how it looks."""

    stages: Sequence[str] = STAGE_NAMES
    cam_stage: str | None = "C5"  # None: no Grad-CAM overlay
    target: int | None = None  # None: the top-1 class
    colormap: str = "viridis"
    cam_colormap: str = "turbo"
    opacity: float = 0.5
    scale: str = "channel"
    order: str = "index"
    # Also write each picture as an annotated figure (figure.py): title, colour bar, channel
    # numbers, "untrained weights"; the raw files stay as they are.
    annotate: bool = False
    # Attribution methods (``attribution_methods.METHODS``) to write an overlay of, each with
    # its faithfulness; Grad-CAM and Guided Grad-CAM at each of ``layers`` (else at
    # ``cam_stage``). With two attributions or more, also a figure of them side by side.
    methods: Sequence[str] = ()
    # Layers (stages, or module names of ``Analyzer.feature_layers()``) to write a grid of,
    # and to attribute at; the analysis must hold the module names' outputs
    # (``Analyzer.analyze(image, layers=...)``).
    layers: Sequence[str] = ()
    # Captum's parameters by method (``Analyzer.attribute``'s); a method left out: defaults.
    parameters: Mapping[str, Mapping[str, object]] = field(default_factory=dict)
    faithfulness_steps: int = DEFAULT_STEPS  # points on each curve after the start


def fitting_stem(stem: str) -> str:
    """``stem`` cut, between characters, to at most MAX_STEM_BYTES bytes as a file name."""
    while len(os.fsencode(stem)) > MAX_STEM_BYTES:
        stem = stem[: -max(1, (len(os.fsencode(stem)) - MAX_STEM_BYTES) // 4)]
    return stem


@dataclass(frozen=True)
class _Planned:
    """One file ``export_result`` writes: its ``kind``, what it shows and its name.

    Kinds: ``grid`` (a stage's or a layer's, ``subject`` its name), ``overlay`` (the Grad-CAM
    overlay at ``cam_stage`` that ``methods`` do not write), ``attribution`` (``subject``:
    ``(method, layer or None)``), each with an ``_annotated`` figure on request; ``methods``
    (the side-by-side figure) and ``timings``.
    """

    kind: str
    subject: object
    name: str


def attribution_layers(options: ExportOptions) -> tuple[str, ...]:
    """Where the layer methods (Grad-CAM, Guided Grad-CAM) attribute: ``options.layers``,
    else ``options.cam_stage`` (C5 when None)."""
    return tuple(options.layers) or (options.cam_stage or DEFAULT_CAM_STAGE,)


def attributions_asked(options: ExportOptions) -> list[tuple[str, str | None]]:
    """``(method, layer)`` of each attribution ``options`` ask for, in order (layer None for
    the methods that attribute at the pixels)."""
    return [
        (method, layer)
        for method in options.methods
        for layer in (attribution_layers(options) if method in LAYER_METHODS else (None,))
    ]


def _plan(stem: str, model: str, options: ExportOptions) -> list[_Planned]:
    """Every file of one image, in the order ``export_result`` writes them."""
    stem = fitting_stem(stem)
    asked = attributions_asked(options)
    planned: list[_Planned] = []

    def picture(kind: str, subject: object, name: str) -> None:
        planned.append(_Planned(kind, subject, f"{name}.png"))
        if options.annotate:
            planned.append(_Planned(f"{kind}_annotated", subject, f"{name}_annotated.png"))

    for name in grid_names(options):
        picture("grid", name, f"{stem}_{model}_{name}")
    if options.cam_stage is not None and ("gradcam", options.cam_stage) not in asked:
        picture("overlay", options.cam_stage, f"{stem}_{model}_gradcam_{options.cam_stage}")
    for method, layer in asked:
        suffix = f"{method}_{layer}" if layer is not None else method
        picture("attribution", (method, layer), f"{stem}_{model}_{suffix}")
    if len(asked) > 1:
        planned.append(_Planned("methods", None, f"{stem}_{model}_methods.png"))
    planned.append(_Planned("timings", None, f"{stem}_{model}_timings.csv"))
    return planned


def grid_names(options: ExportOptions) -> list[str]:
    """The stages and layers ``export_result`` writes a grid of: the stages asked and those
    named among ``options.layers``, in network order, then the other layers, in the order
    given."""
    stages = set(options.stages) | {name for name in options.layers if name in STAGE_NAMES}
    return [stage for stage in STAGE_NAMES if stage in stages] + [
        name for name in options.layers if name not in STAGE_NAMES
    ]


def output_names(stem: str, model: str, options: ExportOptions) -> list[str]:
    """The file names ``export_result`` writes for an image named ``stem`` (cut to fit).

    Per stage (``options.stages`` and the stages among ``options.layers``) and per layer of
    ``options.layers``: ``<stem>_<model>_<name>.png``; the Grad-CAM overlay
    ``<stem>_<model>_gradcam_<cam_stage>.png``; per attribution method
    ``<stem>_<model>_<method>.png``, or ``<stem>_<model>_<method>_<layer>.png`` for the layer
    methods; with ``annotate``, an ``_annotated.png`` beside each of these; with two
    attributions or more ``<stem>_<model>_methods.png``; ``<stem>_<model>_timings.csv``.
    """
    return [planned.name for planned in _plan(stem, model, options)]


def export_result(
    analyzer: Analyzer,
    result: AnalysisResult,
    folder: str | os.PathLike[str],
    stem: str,
    options: ExportOptions = ExportOptions(),
    *,
    cams: Mapping[str, GradCam] | None = None,
    batch: WriteBatch | None = None,
    name: str | None = None,
    progress: Callable[[str, int, int], None] | None = None,
) -> list[Path]:
    """Write the grids, the Grad-CAM overlay and the timings of ``result`` into ``folder``;
    with ``options.annotate``, an annotated figure beside each grid and overlay; with
    ``options.methods``, each method's overlay (``save_attribution``) and, for two or more,
    their figure side by side (``save_methods_figure``). ``output_names`` lists them.

    ``cams``: Grad-CAMs of ``options.target`` already computed for the stages the options
    need (None: computed here). ``name``: the network's name in the file names (default:
    ``result.model``, as DESIGN §4 names them; a comparison of one architecture twice tells
    its two networks apart with ``visualizer.networks.network_names``). The folder must exist.
    Class labels are ``analyzer.categories`` (a labels file's, the checkpoint's, ImageNet's).
    ``progress(what, done, total)`` hears of each pass of the network while the methods run
    (``what``: e.g. ``"integrated-gradients"``, ``"faithfulness of saliency"``), and may stop
    the export by raising.

    All the files or none: each is written under a temporary name and all are renamed into
    place at the end (`WriteBatch`); a failure leaves the folder as it was, old files
    included. With ``batch``, the files join it instead, to be put in place (or taken away)
    with the caller's other files when the caller's batch ends.

    Returns:
        The paths, in the order of ``output_names``.

    Raises:
        OSError: a file could not be written (the error names it); nothing of the call is left.
        KeyError: a layer of ``options.layers`` that ``result.layers`` does not hold.
        ValueError, TypeError: a method, layer or parameter the engine refuses
            (``Analyzer.attribute``).
    """
    folder = Path(folder)
    plan = _plan(stem, name or result.model, options)
    if cams is None:
        wanted = {p.subject for p in plan if p.kind == "overlay"}
        if options.order == "gradcam":
            wanted |= {name for name in grid_names(options) if name in STAGE_NAMES}
        cams = analyzer.gradcams(result, sorted(wanted), options.target) if wanted else {}
    attributions = _attributions(analyzer, result, options, progress)
    written = []
    with writing_into(batch) as files:
        for planned in plan:
            path = folder / planned.name
            written.append(
                _write_planned(
                    planned,
                    path,
                    analyzer=analyzer,
                    result=result,
                    options=options,
                    cams=cams,
                    attributions=attributions,
                    batch=files,
                )
            )
    return written


def _attributions(
    analyzer: Analyzer,
    result: AnalysisResult,
    options: ExportOptions,
    progress: Callable[[str, int, int], None] | None,
) -> dict[tuple[str, str | None], tuple[Attribution, Faithfulness]]:
    """Each attribution ``options`` ask for, with its faithfulness, by ``(method, layer)``."""
    done = {}
    for method, layer in attributions_asked(options):
        what = method if layer is None else f"{method} at {layer}"
        told = None if progress is None else functools.partial(progress, what)
        attribution = analyzer.attribute(
            result,
            method,
            options.target,
            layer,
            progress=told,
            **options.parameters.get(method, {}),
        )
        told = None if progress is None else functools.partial(progress, f"faithfulness of {what}")
        faithfulness = analyzer.faithfulness(
            result, attribution, steps=options.faithfulness_steps, progress=told
        )
        done[method, layer] = (attribution, faithfulness)
    return done


def _write_planned(
    planned: _Planned,
    path: Path,
    *,
    analyzer: Analyzer,
    result: AnalysisResult,
    options: ExportOptions,
    cams: Mapping[str, GradCam],
    attributions: Mapping[tuple[str, str | None], tuple[Attribution, Faithfulness]],
    batch: WriteBatch,
) -> Path:
    """Write one file of ``_plan`` into ``batch``."""
    kind, subject = planned.kind, planned.subject
    if kind in ("grid", "grid_annotated"):
        grid = stage_grid(result, subject, options, cams)
        if kind == "grid":
            return save_grid(path, result, subject, grid, batch=batch)
        ordered_by = None
        if grid.order == "gradcam":
            ordered_by = (cams[subject].target, analyzer.categories[cams[subject].target])
        return save_grid_figure(path, result, subject, grid, order_class=ordered_by, batch=batch)
    if kind in ("overlay", "overlay_annotated"):
        cam = cams[subject]
        label = analyzer.categories[cam.target]
        save = save_overlay if kind == "overlay" else save_overlay_figure
        return save(path, result, cam, label, options, batch=batch)
    if kind in ("attribution", "attribution_annotated"):
        attribution, faithfulness = attributions[subject]
        label = analyzer.categories[attribution.target]
        save = save_attribution if kind == "attribution" else save_attribution_figure
        return save(
            path, result, attribution, label, options, faithfulness=faithfulness, batch=batch
        )
    if kind == "methods":
        pairs = list(attributions.values())
        label = analyzer.categories[pairs[0][0].target]
        return save_methods_figure(path, result, pairs, label, options, batch=batch)
    return save_timings(path, result.timings, batch=batch)


def stage_grid(
    result: AnalysisResult, stage: str, options: ExportOptions, cams: Mapping[str, GradCam]
) -> Grid:
    """The tile grid of ``stage`` (or of a layer of ``result.layers``) as ``options`` ask;
    ordered by Grad-CAM weight, from ``cams`` (which then must hold ``stage``). A layer's
    grid is in channel order where a stage's would be in Grad-CAM weight's (Grad-CAM's
    weights are the stages')."""
    order = options.order
    if order == "gradcam" and stage not in result.stages:
        order = "index"
    weights = cams[stage].channel_weights if order == "gradcam" else None
    return render_grid(
        activation(result, stage),
        colormap=options.colormap,
        scale=options.scale,
        order=order,
        weights=weights,
    )


def save_grid(
    path: str | os.PathLike[str],
    result: AnalysisResult,
    stage: str,
    grid: Grid,
    *,
    batch: WriteBatch | None = None,
) -> Path:
    """Write a stage grid of ``result`` as ``fmviz export`` does (palette PNG, metadata).

    ``batch``: as for ``save_png``."""
    return save_png(path, grid.to_image(), grid_metadata(result, stage, grid), batch=batch)


def save_grid_figure(
    path: str | os.PathLike[str],
    result: AnalysisResult,
    stage: str,
    grid: Grid,
    *,
    order_class: tuple[int, str] | None = None,
    batch: WriteBatch | None = None,
) -> Path:
    """Write the annotated figure of a stage grid (``figure.grid_figure``) as an RGB PNG.

    Its text chunks are the grid's (``grid_metadata``) and the figure's: ``title``,
    ``caption``, ``placement`` and, only when the network is untrained, ``warning``.
    ``order_class``: as for ``grid_figure``; ``batch``: as for ``save_png``.
    """
    figure = grid_figure(result, stage, grid, order_class=order_class)
    metadata = {**grid_metadata(result, stage, grid), **figure_info(figure).metadata()}
    return save_png(path, figure, metadata, batch=batch)


def save_overlay(
    path: str | os.PathLike[str],
    result: AnalysisResult,
    cam: GradCam,
    label: str,
    options: ExportOptions = ExportOptions(),
    *,
    batch: WriteBatch | None = None,
) -> Path:
    """Write the Grad-CAM ``cam`` (of class ``label``) over the input, as ``fmviz export`` does.

    ``options`` gives the colormap and opacity; ``batch``: as for ``save_png``.
    """
    picture = overlay(result.view, cam.map, opacity=options.opacity, colormap=options.cam_colormap)
    metadata = overlay_metadata(result, cam, label, options)
    return save_png(path, Image.fromarray(picture, "RGB"), metadata, batch=batch)


def save_overlay_figure(
    path: str | os.PathLike[str],
    result: AnalysisResult,
    cam: GradCam,
    label: str,
    options: ExportOptions = ExportOptions(),
    *,
    batch: WriteBatch | None = None,
) -> Path:
    """Write the annotated figure of a Grad-CAM overlay (``figure.overlay_figure``) as a PNG.

    Its text chunks are the overlay's (``overlay_metadata``) and the figure's, as for
    ``save_grid_figure``.
    """
    figure = overlay_figure(
        result, cam, label, colormap=options.cam_colormap, opacity=options.opacity
    )
    metadata = {**overlay_metadata(result, cam, label, options), **figure_info(figure).metadata()}
    return save_png(path, figure, metadata, batch=batch)


def overlay_metadata(
    result: AnalysisResult, cam: GradCam, label: str, options: ExportOptions
) -> dict[str, str]:
    """PNG text chunks of a Grad-CAM overlay: ``result_metadata``'s, the stage, the method,
    ``target`` (``"<index> <label>"``, the label as the network's labels name it), the
    colormap, the opacity and the normalisation."""
    return {
        **result_metadata(result),
        "stage": cam.stage,
        "method": GRADCAM_METHOD,
        "target": f"{cam.target} {label}",
        "colormap": options.cam_colormap,
        "opacity": f"{options.opacity:g}",
        "normalisation": "min–max to [0, 1]",
    }


def save_attribution(
    path: str | os.PathLike[str],
    result: AnalysisResult,
    attribution: Attribution,
    label: str,
    options: ExportOptions = ExportOptions(),
    *,
    faithfulness: Faithfulness,
    batch: WriteBatch | None = None,
) -> Path:
    """Write an attribution method's map (of class ``label``) over the input, as the Grad-CAM
    overlay is written (``save_overlay``), with ``attribution_metadata``; ``batch``: as for
    ``save_png``."""
    picture = overlay(
        result.view, attribution.map, opacity=options.opacity, colormap=options.cam_colormap
    )
    metadata = attribution_metadata(result, attribution, faithfulness, label, options)
    return save_png(path, Image.fromarray(picture, "RGB"), metadata, batch=batch)


def save_attribution_figure(
    path: str | os.PathLike[str],
    result: AnalysisResult,
    attribution: Attribution,
    label: str,
    options: ExportOptions = ExportOptions(),
    *,
    faithfulness: Faithfulness,
    batch: WriteBatch | None = None,
) -> Path:
    """Write the annotated figure of an attribution (``figure.attribution_figure``) as a PNG,
    with ``attribution_metadata`` and the figure's text chunks."""
    figure = attribution_figure(
        result,
        attribution,
        label,
        faithfulness=faithfulness,
        colormap=options.cam_colormap,
        opacity=options.opacity,
    )
    metadata = {
        **attribution_metadata(result, attribution, faithfulness, label, options),
        **figure_info(figure).metadata(),
    }
    return save_png(path, figure, metadata, batch=batch)


def save_methods_figure(
    path: str | os.PathLike[str],
    result: AnalysisResult,
    attributions: Sequence[tuple[Attribution, Faithfulness]],
    label: str,
    options: ExportOptions = ExportOptions(),
    *,
    batch: WriteBatch | None = None,
) -> Path:
    """Write the attributions of one class side by side (``methods_figure.methods_figure``).

    Text chunks: ``result_metadata``'s, ``target``, ``methods`` (the methods, in order),
    ``attributions`` (JSON: a list of ``{method, layer, parameters, deletion_auc,
    insertion_auc}``), ``faithfulness`` (how it was measured) and the figure's (``title``,
    ``caption``, ``placement``, ``warning``).
    """
    figure = methods_figure(
        result, attributions, label, colormap=options.cam_colormap, opacity=options.opacity
    )
    target = attributions[0][0].target
    steps = len(attributions[0][1].fractions) - 1
    summary = [
        {
            "method": attribution.method,
            "layer": attribution.layer,
            "parameters": _jsonable(attribution.parameters),
            "deletion_auc": faithfulness.deletion_auc,
            "insertion_auc": faithfulness.insertion_auc,
        }
        for attribution, faithfulness in attributions
    ]
    metadata = {
        **result_metadata(result),
        "target": f"{target} {label}",
        "methods": ",".join(dict.fromkeys(a.method for a, _ in attributions)),
        "attributions": json.dumps(summary),
        "faithfulness": faithfulness_method(steps),
        "colormap": options.cam_colormap,
        "opacity": f"{options.opacity:g}",
        **figure_info(figure).metadata(),
    }
    return save_png(path, figure, metadata, batch=batch)


def faithfulness_method(steps: int) -> str:
    """How ``deletion_auc`` and ``insertion_auc`` were measured, in words."""
    return (
        f"deletion and insertion (Petsiuk et al., RISE, BMVC 2018): {steps} steps of 1/{steps} "
        "of the pixels, most attributed first, deleted pixels 0 in the normalised input (the "
        "mean colour); the areas under the class's probability, trapezoidal rule over the "
        "fraction of pixels 0 to 1"
    )


def attribution_metadata(
    result: AnalysisResult,
    attribution: Attribution,
    faithfulness: Faithfulness,
    label: str,
    options: ExportOptions,
) -> dict[str, str]:
    """PNG text chunks of an attribution's overlay: ``result_metadata``'s; ``method`` (its
    name in ``attribution_methods.METHODS``), ``method description`` (Captum's call and how
    the map is made), ``paper``; ``parameters`` (JSON: what went to Captum, defaults
    included); ``layer`` (a stage or module name, or ``input`` for methods at the pixels);
    ``stage`` for a layer method at a stage; ``target`` (``"<index> <label>"``);
    ``deletion_auc`` and ``insertion_auc`` (``repr`` of the floats), ``deletion_curve`` and
    ``insertion_curve`` (JSON lists, the probability at each fraction), ``faithfulness`` (how
    they were measured); colormap, opacity and normalisation."""
    steps = len(faithfulness.fractions) - 1
    text = {
        **result_metadata(result),
        "method": attribution.method,
        "method description": method_description(attribution.method),
        "paper": PAPERS.get(attribution.method, ""),
        "parameters": json.dumps(_jsonable(attribution.parameters)),
        "layer": attribution.layer or "input",
        "target": f"{attribution.target} {label}",
        "deletion_auc": repr(faithfulness.deletion_auc),
        "insertion_auc": repr(faithfulness.insertion_auc),
        "deletion_curve": json.dumps([float(v) for v in faithfulness.deletion]),
        "insertion_curve": json.dumps([float(v) for v in faithfulness.insertion]),
        "faithfulness": faithfulness_method(steps),
        "colormap": options.cam_colormap,
        "opacity": f"{options.opacity:g}",
        "normalisation": "min–max to [0, 1]",
    }
    if attribution.layer in STAGE_NAMES:
        text["stage"] = attribution.layer
    return text


def method_description(method: str) -> str:
    """A method's Captum call and how its result becomes a map, in words (for Grad-CAM,
    ``GRADCAM_METHOD``)."""
    if method == "gradcam":
        return GRADCAM_METHOD
    title = TITLES.get(method, method)
    captum = CAPTUM_CALLS.get(method, "Captum")
    return f"{title}: {captum}; map: {MAP_WORDS[method]}, min–max scaled to [0, 1]"


# Captum's class behind each method, for ``method_description``.
CAPTUM_CALLS = {
    "guided-gradcam": "Captum GuidedGradCam (ReLUs made out-of-place for its pass)",
    "saliency": "Captum Saliency (abs=True)",
    "integrated-gradients": "Captum IntegratedGradients",
    "occlusion": "Captum Occlusion (the window covers every channel)",
    "smoothgrad-saliency": "Captum NoiseTunnel(Saliency, abs=True), smoothgrad, seeded noise",
    "smoothgrad-ig": "Captum NoiseTunnel(IntegratedGradients), smoothgrad, seeded noise",
}


def _jsonable(parameters: Mapping[str, object]) -> dict[str, object]:
    """Captum's parameters as JSON takes them: tuples as lists, anything else not a number,
    string, bool or None as its ``repr``."""

    def plain(value: object) -> object:
        if isinstance(value, (tuple, list)):
            return [plain(item) for item in value]
        if value is None or isinstance(value, (bool, int, float, str)):
            return value
        return repr(value)

    return {name: plain(value) for name, value in parameters.items()}


def result_metadata(result: AnalysisResult) -> dict[str, str]:
    """Where a picture comes from: program, model, weights, image, preprocessing, device, and
    the network's classes.

    ``preprocessing`` is what made the input (the network's own mean, std and sizes where it
    has them); ``input`` its ``channels×height×width``; ``classes`` the number of classes;
    ``labels`` where their names come from (``result.labels_source``); ``scores`` how a logit
    becomes a probability (``softmax`` over the classes, or the ``sigmoid`` of a one-output
    head).
    """
    channels, height, width = result.input.shape[-3:]
    return {
        "software": f"fmviz {__version__}",
        "model": result.model,
        "weights": result.weights,
        "source": result.source,
        "preprocessing": str(result.preprocessing),
        "input": f"{channels}×{height}×{width}",
        "classes": str(result.classes),
        "labels": result.labels_source,
        "scores": score_words(result),
        "device": result.device,
    }


def score_words(result: AnalysisResult) -> str:
    """How ``result``'s probabilities are made from its logits, in words."""
    if result.scores == "sigmoid":
        return "sigmoid of the one output (a binary classifier's probability)"
    return f"softmax over the {result.classes} classes"


def grid_metadata(result: AnalysisResult, stage: str, grid: Grid) -> dict[str, str]:
    """PNG text chunks of a stage grid (``stage``), or of a layer's (``layer``)."""
    layout = grid.layout
    channels, height, width = activation(result, stage).shape
    return {
        **result_metadata(result),
        ("stage" if stage in result.stages else "layer"): stage,
        "channels": str(channels)
        if len(layout.order) == channels
        else f"{len(layout.order)} of {channels}",
        "layout": (
            f"{layout.rows} rows × {layout.columns} columns of {height}×{width} tiles, "
            f"{layout.gutter}-pixel gutter, row by row"
        ),
        "normalisation": SCALES[grid.scale],
        "colormap": grid.colormap,
        "channel order": ORDERS.get(grid.order, "as listed")
        + _order_list(layout.order, grid.order),
    }


def save_png(
    path: str | os.PathLike[str],
    image: Image.Image,
    metadata: Mapping[str, str],
    *,
    batch: WriteBatch | None = None,
) -> Path:
    """Write ``image`` as a PNG with ``metadata`` as text chunks, atomically; with ``batch``,
    as one of its files (in place when the batch is committed)."""
    info = PngImagePlugin.PngInfo()
    for key, value in metadata.items():
        # Latin-1 as tEXt, anything else as UTF-8 iTXt.
        info.add_text(key, _escaped(value))
    buffer = io.BytesIO()
    image.save(buffer, "PNG", pnginfo=info, compress_level=PNG_COMPRESS_LEVEL)
    return _write(path, buffer.getbuffer(), batch)


def _escaped(text: str) -> str:
    """``text`` with every character that is not printable escaped as Python writes it.

    A file name may hold newlines, terminal escapes or (held as surrogates) bytes that are not
    UTF-8: in a PNG text chunk they read back as one line, ``\\n``, ``\\x1b``, ``\\udce9``.
    """
    if text.isprintable():
        return text
    return "".join(char if char.isprintable() else repr(char)[1:-1] for char in text)


def save_timings(
    path: str | os.PathLike[str], timings: Sequence[Timing], *, batch: WriteBatch | None = None
) -> Path:
    """Write per-layer timings as CSV (``layer,type,milliseconds``), atomically; ``batch``: as
    for ``save_png``."""
    text = io.StringIO(newline="")
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(["layer", "type", "milliseconds"])
    writer.writerows((name, kind, f"{ms:.4f}") for name, kind, ms in timings)
    return _write(path, text.getvalue().encode(), batch)


def write_atomically(path: str | os.PathLike[str], data: bytes | memoryview) -> Path:
    """Write ``data`` to ``path`` through a temporary file in the same folder and a rename.

    Raises:
        OSError: naming ``path`` (not the temporary file, which is gone); an old file at
            ``path`` is then unchanged.
    """
    with WriteBatch() as batch:
        batch.write(path, data)
    return Path(path)


class WriteBatch:
    """Files that appear together or not at all.

    ``write`` puts each file's bytes in a new hidden temporary beside its place; ``commit``
    renames them all into place, in the order written; ``discard`` removes the temporaries.
    As a context manager, a batch commits when its block ends normally and discards when it
    ends by an exception (``KeyboardInterrupt`` included), which then goes on.

    If a rename fails, the files renamed before it are taken back: each file they replaced is
    restored from a hard link made before the rename (``.<name>.<hex>.old``; none where the
    file system cannot link, and then the new file is removed, the old one lost) and each new
    one removed. The error names the file whose rename failed.

    Examples::

        with WriteBatch() as batch:
            save_png(folder / "a.png", picture, {}, batch=batch)
            save_timings(folder / "a.csv", timings, batch=batch)
        batch.committed  # both paths, now in place
    """

    def __init__(self) -> None:
        self._pending: list[tuple[Path, Path]] = []  # (temporary, final place)
        self.committed: list[Path] = []  # the files put in place, after commit

    def __enter__(self) -> WriteBatch:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if kind is None:
            self.commit()
        else:
            self.discard()

    def write(self, path: str | os.PathLike[str], data: bytes | memoryview) -> Path:
        """Write ``data`` to a temporary for ``path``; ``path`` is what ``commit`` will make.

        Raises:
            OSError: naming ``path``; the temporary is gone (the batch's others stay, for the
                caller to discard).
        """
        path = Path(path)
        temporary: Path | None = None
        try:
            temporary, handle = _new_temporary(path)
            with os.fdopen(handle, "wb") as file:
                file.write(data)
        except BaseException as error:
            if temporary is not None:
                temporary.unlink(missing_ok=True)
            if isinstance(error, OSError):
                raise _naming(error, path) from None
            raise
        self._pending.append((temporary, path))
        return path

    def commit(self) -> list[Path]:
        """Rename every file written into place; the paths, in order.

        Raises:
            OSError: a rename failed (naming its file); the folder is then as it was.
        """
        pending, self._pending = self._pending, []
        done: list[tuple[Path, Path | None]] = []  # (place, hard link to the file it replaced)
        path = None
        try:
            for temporary, path in pending:
                backup = _hard_link(path)
                try:
                    os.replace(temporary, path)
                except BaseException:
                    if backup is not None:
                        backup.unlink(missing_ok=True)
                    raise
                done.append((path, backup))
        except BaseException as error:
            _take_back(done)
            for temporary, _ in pending:  # those renamed are gone already
                temporary.unlink(missing_ok=True)
            if isinstance(error, OSError) and path is not None:
                raise _naming(error, path) from None
            raise
        for _, backup in done:
            if backup is not None:
                backup.unlink(missing_ok=True)
        self.committed.extend(place for place, _ in done)
        return [place for place, _ in done]

    def discard(self) -> None:
        """Remove every temporary written; nothing of the batch is left."""
        pending, self._pending = self._pending, []
        for temporary, _ in pending:
            temporary.unlink(missing_ok=True)


@contextlib.contextmanager
def writing_into(batch: WriteBatch | None) -> Iterator[WriteBatch]:
    """``batch``, left to its owner to commit; or, when None, a batch of its own, committed
    when the block ends normally and discarded otherwise."""
    if batch is not None:
        yield batch
        return
    with WriteBatch() as own:
        yield own


def _write(
    path: str | os.PathLike[str], data: bytes | memoryview, batch: WriteBatch | None
) -> Path:
    return batch.write(path, data) if batch is not None else write_atomically(path, data)


def _naming(error: OSError, path: Path) -> OSError:
    """``error`` as the same kind of error, naming ``path`` (not a temporary)."""
    return type(error)(error.errno, error.strerror or str(error), str(path))


def _hard_link(path: Path) -> Path | None:
    """A second name (``.<name>.<hex>.old``) for the file at ``path``, so that it can be put
    back after ``path`` is replaced; None when there is no file or no way to link it."""
    if not path.is_file():
        return None
    backup = path.with_name(f".{path.name}.{secrets.token_hex(4)}.old")
    try:
        os.link(path, backup)
    except OSError:
        return None
    return backup


def _take_back(done: list[tuple[Path, Path | None]]) -> None:
    """Undo renames: the old file back where one was, else the new file removed."""
    for place, backup in reversed(done):
        try:
            if backup is not None:
                os.replace(backup, place)
            else:
                place.unlink(missing_ok=True)
        except OSError:
            continue  # as much as can be undone


def _new_temporary(path: Path) -> tuple[Path, int]:
    """A new hidden file beside ``path``, created with the usual permissions (umask applies)."""
    while True:
        temporary = path.with_name(f".{path.name}.{secrets.token_hex(4)}.part")
        try:
            return temporary, os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:
            continue


def _order_list(order: tuple[int, ...], by: str) -> str:
    if by == "index" and order == tuple(range(len(order))):
        return ""
    return ": " + " ".join(str(channel) for channel in order)
