"""The desktop app's model work, done on its worker thread: plain data in, plain data out.

Nothing here touches Qt, and torch is imported only when the first job runs, so the window
can be on screen before it. A `Session` keeps what is slow to make again (networks, analyses,
Grad-CAMs, attributions, the outputs of layers picked), so that a new stage, colormap, order
or class only renders.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image, ImageOps

from visualizer.choices import STAGES
from visualizer.networks import NetworkSpec
from visualizer.ui.atlas_jobs import DATASET_ORDERS, open_atlas
from visualizer.ui.method_jobs import (
    LAYER_METHODS,
    METHOD_TITLES,
    NO_CONTROL,
    JobControl,
    MethodData,
    MethodJob,
    MethodSettings,
    Step,
)

if TYPE_CHECKING:
    import torch

    from visualizer.core import AnalysisResult, Analyzer, Attribution, FeatureLayer, GradCam
    from visualizer.core.atlas import Atlas
    from visualizer.core.faithfulness import Faithfulness
    from visualizer.core.render import Grid
    from visualizer.core.stage_summary import StageRow

RESULTS_KEPT = 8  # analyses cached per session (a VGG16 analysis holds about 25 MB)
CAMS_KEPT = 64
ATTRIBUTIONS_KEPT = 32  # maps of other methods and layers, and their faithfulness curves
LAYER_OUTPUTS_KEPT = 4  # outputs of layers picked (VGG16's first ones hold 12.8 MB each)
# Both networks of a comparison and the one used alone before it (a VGG16 holds 530 MB).
ANALYZERS_KEPT = 3
THUMBNAIL_SIZE = 96
DOWNLOAD_POLL_S = 0.25
DEFAULT_INPUT = "ImageNet default"  # the status bar's word for torchvision's ImageNet transform

Progress = Callable[[str, float | None], None]  # (what is happening, fraction done or None)


@dataclass(frozen=True)
class ModelSpec:
    """Which network (architecture, weights, labels, preprocessing: a ``NetworkSpec``'s
    fields), on which device."""

    model: str = "resnet101"
    weights: str = "imagenet"  # "imagenet", "random" or a checkpoint path
    device: str = "auto"
    labels: str | None = None  # a labels file; None: the checkpoint's, ImageNet's or "class i"
    mean: tuple[float, ...] | None = None  # None: the checkpoint's, else ImageNet's
    std: tuple[float, ...] | None = None
    resize: int | None = None
    crop: int | None = None

    @classmethod
    def of(cls, network: NetworkSpec, device: str = "auto") -> ModelSpec:
        """``network`` on ``device``."""
        return cls(network.model, network.weights, device, **network.analyzer_options())  # type: ignore[arg-type]

    @property
    def network(self) -> NetworkSpec:
        """The network alone, without the device."""
        return NetworkSpec(
            self.model, self.weights, self.labels, self.mean, self.std, self.resize, self.crop
        )

    @property
    def label(self) -> str:
        """``"ResNet101"``, or with a checkpoint ``"ResNet101 · ft5.pth"``."""
        return self.network.label

    def options(self) -> dict[str, object]:
        """``Analyzer``'s keyword arguments beyond model, weights and device: those given."""
        return {
            name: value
            for name, value in self.network.analyzer_options().items()
            if value is not None
        }


@dataclass(frozen=True, eq=False)
class Picture:
    """An image the user added, already read and checked by ``load_image``."""

    key: int
    name: str  # shown in the title and the strip, e.g. "chelsea.jpg"
    source: str  # the file, or e.g. "<clipboard 1>"
    image: Image.Image | None  # RGB, for an image given in memory; None: read ``source`` again
    thumbnail: np.ndarray  # (h, w, 3) uint8, at most THUMBNAIL_SIZE a side
    notes: tuple[str, ...] = ()  # "<file>: <what>": metadata skipped or malformed when read
    live: bool = False  # a live frame: analysed quietly, and forgotten with the next one

    @property
    def label(self) -> str:
        """``name`` as the window shows it: characters Qt cannot show (newlines, bytes of a
        name that are not UTF-8) escaped, so that two names never look the same."""
        return _printable(self.name)

    @property
    def where(self) -> str:
        """``source``, escaped as ``label`` is."""
        return _printable(self.source)


@dataclass(frozen=True)
class ViewOptions:
    """How the user wants to see an analysis."""

    stage: str = "C1"  # the grid's stage
    cam_stage: str = "C5"  # the Grad-CAM's stage
    colormap: str = "viridis"
    scale: str = "channel"  # "channel" or "stage"
    order: str = "index"  # "index", "mean", "gradcam" or one of ``DATASET_ORDERS``
    top_n: int = 0  # show the first N channels of the order; 0: all
    target: int | None = None  # Grad-CAM class; None: the top-1 class
    cam_colormap: str = "turbo"
    opacity: float = 0.5
    aspect: float = 1.0  # the grid pane's width ÷ height: the tile columns fill it
    # A feature layer picked (``Analyzer.feature_layers``): the grid shows it instead of
    # ``stage``, and ``cam_layer`` is where the map is made instead of ``cam_stage``.
    layer: str | None = None
    cam_layer: str | None = None
    cam_method: str = "gradcam"  # the map beside the grid: any of ``method_jobs.METHODS``
    # With an order of ``DATASET_ORDERS``: the grid's channels in that order, by the open
    # index's statistics (the window sets it; a dataset index is not the worker's to read).
    dataset_order: tuple[int, ...] = ()

    @property
    def grid_name(self) -> str:
        """What the grid shows: the layer picked, else the stage."""
        return self.layer or self.stage

    @property
    def cam_at(self) -> str:
        """Where Grad-CAM (and Guided Grad-CAM) attribute: the layer picked, else the stage."""
        return self.cam_layer or self.cam_stage

    def single(self) -> ViewOptions:
        """These options for compare mode, which shows stages: no layer picked."""
        return dataclasses.replace(self, layer=None, cam_layer=None)


@dataclass(frozen=True)
class ModelInfo:
    """What the window says about the network in use."""

    spec: ModelSpec  # as asked for (weights may have fallen back: see ``weights``)
    weights: str  # e.g. "ImageNet (IMAGENET1K_V2)" or "random (untrained, seed 0)"
    device: str  # e.g. "CPU (2 threads)"
    trained: bool
    banner: str | None  # shown above the views: untrained weights, and why
    categories: tuple[str, ...]
    parameters: int
    fallback: str | None = None  # why ImageNet weights could not be had, if they were asked for
    stage_parameters: tuple[tuple[str, int], ...] = ()  # per stage and the head
    labels_source: str = ""  # e.g. "labels.txt", "the checkpoint ('classes')", "none"
    preprocessing: str = ""  # short, for the status bar: "resize 232, crop 224, mean …"
    preprocessing_detail: str = ""  # ``Preprocessing.describe()``
    unwrapped: str | None = None  # what was removed around the checkpoint's state dict
    binary: bool = False  # one output: a sigmoid probability

    @property
    def num_classes(self) -> int:
        return len(self.categories)


@dataclass(frozen=True)
class LayerRow:
    """One leaf layer's timing."""

    name: str
    kind: str
    shape: tuple[int, ...]
    ms: float
    stage: str  # "C1" … "C5", or "head"


@dataclass(frozen=True, eq=False)
class ViewData:
    """Everything the window shows for one image, one network and one set of options."""

    picture: int  # Picture.key
    model: ModelInfo
    options: ViewOptions
    view: np.ndarray  # (H, W, 3) uint8: the input as the network saw it
    grid: Grid  # the stage's tile grid (indices, palette, layout)
    activation: np.ndarray  # (C, h, w) float32: the stage, for values under the cursor
    cam: np.ndarray  # (H, W) float32 in [0, 1]
    cam_lut: np.ndarray  # (256, 4) uint8: the Grad-CAM colormap
    channel_lut: np.ndarray  # (256, 4) uint8: the grid's colormap, for one channel shown large
    target: int
    target_label: str
    target_probability: float  # what this network gives the class explained
    target_rank: int  # 1: its top-1
    topk: tuple[tuple[int, str, float], ...]  # min(5, N) rows
    layers: tuple[LayerRow, ...]
    stage_shapes: dict[str, tuple[int, ...]]
    stage_rows: tuple[StageRow, ...]  # C1–C5 and the head: shape, time, parameters
    device: str
    notice: str | None
    timing: str = ""  # how the layers were timed, e.g. after an untimed warm-up pass
    scores: str = "softmax"  # "sigmoid" for a one-output (binary) network
    shared: bool = True  # compare mode: the class explained is the one the other side explains
    grid_kind: str = ""  # the module type of the layer picked, e.g. "Bottleneck"; "" for a stage
    grid_note: str = ""  # what the grid could not do as asked, e.g. an order for stages only

    @property
    def total_ms(self) -> float:
        return sum(row.ms for row in self.layers)

    @property
    def grid_name(self) -> str:
        """What the grid shows: ``"C3"`` or a layer, ``"layer3.4"``."""
        return self.options.grid_name

    @property
    def cam_title(self) -> str:
        """The map's method and where: ``"Grad-CAM at C5"``, ``"Saliency"``."""
        method = self.options.cam_method
        title = METHOD_TITLES.get(method, method)
        return f"{title} at {self.options.cam_at}" if method in LAYER_METHODS else title


def _printable(text: str) -> str:
    return text if text.isprintable() else repr(text)[1:-1]


def load_picture(key: int, path: str) -> Picture:
    """Read an image file for the strip; raises ``ImageLoadError`` naming the file and why."""
    from visualizer.core import load_image_with_notes  # noqa: PLC0415 (torch loads with it)

    # Only the thumbnail is kept: the pixels are read again when the image is analysed, so a
    # folder of large photos does not sit decoded in memory.
    image, notes = load_image_with_notes(path)
    image.thumbnail((THUMBNAIL_SIZE, THUMBNAIL_SIZE))
    return Picture(key, Path(path).name, path, None, np.ascontiguousarray(image), notes)


def picture_of(key: int, name: str, source: str, image: Image.Image) -> Picture:
    """A `Picture` of an RGB image given in memory (pasted or dropped as data)."""
    thumbnail = ImageOps.contain(image, (THUMBNAIL_SIZE, THUMBNAIL_SIZE))
    return Picture(key, name, source, image, np.ascontiguousarray(thumbnail))


class ExportError(OSError):
    """An export could not be written; the message names the file chosen and why."""


class Session:
    """The worker thread's state: networks, analyses and Grad-CAMs, kept for reuse."""

    def __init__(self, progress: Progress | None = None) -> None:
        self._progress = progress or (lambda _text, _fraction: None)
        self._analyzers: dict[ModelSpec, tuple[Analyzer, ModelInfo]] = {}
        self._results: OrderedDict[Hashable, AnalysisResult] = OrderedDict()
        self._cams: OrderedDict[Hashable, GradCam] = OrderedDict()
        self._attributions: OrderedDict[Hashable, Attribution] = OrderedDict()
        self._faithfulness: OrderedDict[Hashable, Faithfulness] = OrderedDict()
        self._layer_outputs: OrderedDict[Hashable, torch.Tensor] = OrderedDict()
        self._live_key: int | None = None  # the live frame whose analyses are kept
        self._local = threading.local()  # the running job's control, per thread

    @contextlib.contextmanager
    def running(self, control: JobControl) -> Iterator[None]:
        """Inside, the jobs of this thread stop and report their steps through ``control``."""
        self._local.control = control
        try:
            yield
        finally:
            self._local.control = NO_CONTROL

    @property
    def control(self) -> JobControl:
        """The running job's control (`NO_CONTROL` outside a job)."""
        return getattr(self._local, "control", NO_CONTROL)

    def layers(self, spec: ModelSpec) -> tuple[FeatureLayer, ...]:
        """The network's feature layers, in execution order (``Analyzer.feature_layers``)."""
        analyzer, _ = self._analyzer(spec)
        return tuple(analyzer.feature_layers())

    def method(self, job: MethodJob) -> MethodData:
        """``job.method``'s map of ``job.target`` for ``job.picture`` and its deletion and
        insertion curves (each kept for reuse), reporting each pass of the network."""
        from visualizer.core.attribution_methods import describe_parameters  # noqa: PLC0415

        result = self._result(job.spec, job.picture)
        layer = job.layer if job.method in LAYER_METHODS else None
        attribution = self._attribution(
            job.spec,
            job.picture,
            result,
            job.method,
            job.target,
            layer=layer,
            settings=job.settings,
        )
        faithful = self._faithful(job.spec, job.picture, result, attribution, job.settings)
        return MethodData(
            method=job.method,
            title=METHOD_TITLES.get(job.method, job.method),
            target=job.target,
            layer=layer,
            parameters=describe_parameters(attribution.parameters),
            view=np.asarray(result.view),
            map=attribution.map,
            fractions=faithful.fractions,
            deletion=faithful.deletion,
            insertion=faithful.insertion,
            deletion_auc=faithful.deletion_auc,
            insertion_auc=faithful.insertion_auc,
        )

    def model(self, spec: ModelSpec) -> ModelInfo:
        """Build the network of ``spec`` (once); ImageNet weights that cannot be had fall
        back to untrained ones, with a banner that says so."""
        return self._analyzer(spec)[1]

    def view(
        self,
        spec: ModelSpec,
        picture: Picture,
        options: ViewOptions,
        lead: ModelSpec | None = None,
        *,
        own_target: int | None = None,
        partner: ModelSpec | None = None,
        methods: MethodSettings | None = None,
    ) -> ViewData:
        """Analyse ``picture`` (once per network) and render it as ``options`` ask.

        With no class chosen, Grad-CAM explains the top-1 class of ``lead`` (default: this
        network), so that two networks compared explain the same class. When this network is
        compared with ``partner`` and their classes differ, it explains its own class
        instead: ``own_target``, else its own top-1 (``ViewData.shared`` is then False).
        ``methods``: how a method other than Grad-CAM at a stage runs (default settings).
        """
        from visualizer.core.analysis import probabilities_of  # noqa: PLC0415
        from visualizer.core.render import colormap_table  # noqa: PLC0415
        from visualizer.core.stage_summary import stage_rows  # noqa: PLC0415

        analyzer, info = self._analyzer(spec)
        result = self._result(spec, picture)
        shared = partner is None or self.model(partner).categories == info.categories
        if shared:
            target = self._target(spec, picture, options, lead)
        else:
            target = own_target if own_target is not None else result.topk[0][0]
        if not 0 <= target < len(analyzer.categories):  # chosen for another network
            target = result.topk[0][0]
        cam = self._map(spec, picture, result, options, target, methods=methods)
        grid_kind, grid_note = "", ""
        if options.layer is not None:
            stage = self._layer_output(spec, picture, options.layer)
            grid_kind = self._kind(spec, options.layer)
            drawn = options
            if options.order == "gradcam":  # channel weights are the stages' (C1–C5)
                drawn = dataclasses.replace(options, order="index")
                grid_note = "Grad-CAM order is for the stages C1–C5: in channel order"
            grid = _grid(stage, drawn, None, on_screen=True, name=options.layer)
        else:
            stage = result.stages[options.stage]
            weights = None
            if options.order == "gradcam":
                weights = self._cam(spec, picture, result, options.stage, target).channel_weights
            grid = _grid(stage, options, weights, on_screen=True, name=options.stage)
        probabilities = probabilities_of(result.logits.float(), result.scores)
        return ViewData(
            picture=picture.key,
            model=info,
            options=options,
            view=np.asarray(result.view),
            grid=grid,
            activation=stage.numpy(),
            cam=cam,
            cam_lut=colormap_table(options.cam_colormap),
            channel_lut=colormap_table(options.colormap),
            target=target,
            target_label=analyzer.categories[target],
            target_probability=float(probabilities[target]),
            target_rank=int((probabilities > probabilities[target]).sum()) + 1,
            topk=tuple(result.topk),
            layers=_layer_rows(analyzer, result),
            stage_shapes={name: tuple(result.stages[name].shape) for name in STAGES},
            stage_rows=stage_rows(analyzer.model, result, dict(info.stage_parameters)),
            # A fall-back to the CPU during this view's Grad-CAM, after the analysis, is said
            # as one during the analysis is: where the network runs now, and why.
            device=analyzer.describe_device() if analyzer.notice else result.device,
            notice=analyzer.notice or result.notice,
            timing=result.timing,
            scores=getattr(result, "scores", "softmax"),
            shared=shared,
            grid_kind=grid_kind,
            grid_note=grid_note,
        )

    def export(
        self, spec: ModelSpec, picture: Picture, options: ViewOptions, what: str, path: str
    ) -> list[Path]:
        """Write ``what`` of the current view as ``fmviz export`` does.

        ``what``: ``"grid"`` (the stage's grid to the file ``path``), ``"grids"`` (all five
        into the folder ``path``, named as ``fmviz export`` names them, all or none),
        ``"overlay"`` (the Grad-CAM overlay to ``path``), ``"grid_figure"`` and
        ``"overlay_figure"`` (the same as annotated figures: title, channel numbers, colour
        bar, as ``fmviz export --annotate`` writes them) or ``"timings"`` (the CSV to ``path``).
        """
        with _export_errors(path):
            return self._export(spec, picture, options, what, path)

    def export_comparison(
        self,
        specs: tuple[ModelSpec, ...],
        picture: Picture,
        options: ViewOptions,
        what: str,
        path: str,
        *,
        lead: ModelSpec,
        own_targets: tuple[int | None, ...] = (),
        labels: tuple[str, ...] = (),
    ) -> list[Path]:
        """Write the comparison of ``specs`` on screen: ``what`` is ``"comparison"`` (one PNG,
        the stage and Grad-CAM of each) or ``"comparison_timings"`` (the per-stage CSV).

        Networks with the same classes explain one class (as ``view`` does); networks with
        different ones each their own: ``own_targets[i]``, else its top-1. ``labels``: the
        networks' names, as the window shows them.
        """
        from visualizer.core.comparison import (  # noqa: PLC0415
            ComparedSide,
            save_comparison,
            save_comparison_timings,
        )
        from visualizer.core.export import ExportOptions  # noqa: PLC0415
        from visualizer.core.stage_summary import stage_rows  # noqa: PLC0415
        from visualizer.networks import network_names  # noqa: PLC0415

        with _export_errors(path):
            built = [self._analyzer(spec) for spec in specs]
            results = [self._result(spec, picture) for spec in specs]
            rows = [
                stage_rows(analyzer.model, result, dict(info.stage_parameters))
                for (analyzer, info), result in zip(built, results, strict=True)
            ]
            names = network_names(tuple(spec.network for spec in specs))
            if what == "comparison_timings":
                return [save_comparison_timings(path, results, rows, names=names)]
            shared = all(info.categories == built[0][1].categories for _, info in built)
            own = own_targets or (None,) * len(specs)
            if shared:
                targets = [self._target(specs[0], picture, options, lead)] * len(specs)
            else:
                targets = [
                    chosen if chosen is not None else result.topk[0][0]
                    for chosen, result in zip(own, results, strict=True)
                ]
            sides = []
            for index, (spec, result, own_rows) in enumerate(
                zip(specs, results, rows, strict=True)
            ):
                target = targets[index]
                weights = None
                if options.order == "gradcam":
                    stage_cam = self._cam(spec, picture, result, options.stage, target)
                    weights = stage_cam.channel_weights
                grid = _grid(result.stages[options.stage], options, weights)
                cam = self._cam(spec, picture, result, options.cam_stage, target)
                name = labels[index] if labels else None
                label = built[index][0].categories[target]
                sides.append(ComparedSide(result, grid, options.stage, cam, own_rows, name, label))
            chosen = ExportOptions(
                cam_stage=options.cam_stage,
                target=targets[0],
                cam_colormap=options.cam_colormap,
                opacity=options.opacity,
            )
            label = built[0][0].categories[targets[0]]
            return [save_comparison(path, sides, label, chosen, own_classes=not shared)]

    def export_methods(
        self, jobs: Sequence[MethodJob], path: str, colormap: str, opacity: float
    ) -> list[Path]:
        """Write the methods of ``jobs`` (one image, network and class) side by side as one
        PNG figure, with their curves and areas (``export.save_methods_figure``), at ``path``;
        the maps are those on screen (kept), with the colormap and opacity given."""
        from visualizer.core.export import ExportOptions, save_methods_figure  # noqa: PLC0415

        if not jobs:
            raise ValueError("no attribution method to export")
        with _export_errors(path):
            first = jobs[0]
            analyzer, _ = self._analyzer(first.spec)
            result = self._result(first.spec, first.picture)
            pairs = []
            for job in jobs:
                attribution = self._attribution(
                    job.spec,
                    job.picture,
                    result,
                    job.method,
                    job.target,
                    layer=job.layer if job.method in LAYER_METHODS else None,
                    settings=job.settings,
                )
                faithful = self._faithful(job.spec, job.picture, result, attribution, job.settings)
                pairs.append((attribution, faithful))
            chosen = ExportOptions(cam_colormap=colormap, opacity=opacity)
            label = analyzer.categories[first.target]
            return [save_methods_figure(path, result, pairs, label, chosen)]

    def open_atlas(self, spec: ModelSpec, folder: str) -> Atlas:
        """The dataset index in ``folder``, once it is known to be ``spec``'s network's.

        Raises:
            IndexFileError: the folder holds no complete index.
            ValueError: the index was made with another network, other weights or other
                preprocessing (the message says which).
        """
        atlas = open_atlas(folder)
        self.check_atlas(spec, atlas)
        return atlas

    def check_atlas(self, spec: ModelSpec, atlas: Atlas) -> Atlas:
        """``atlas``, when it was made by ``spec``'s network (``identity.mismatch``).

        Raises:
            ValueError: it was not; the message names the index and why.
        """
        from visualizer.core.atlas.identity import mismatch  # noqa: PLC0415

        analyzer, _ = self._analyzer(spec)
        reason = mismatch(atlas.metadata, analyzer)
        if reason is not None:
            raise ValueError(f"The index {atlas.folder} is not {spec.label}'s: {reason}")
        return atlas

    @staticmethod
    def export_atlas(
        atlas: Atlas,
        layer: str,
        channel: int,
        path: str,
        *,
        activation: np.ndarray | None,
        image: str | None,
        colormap: str,
    ) -> list[Path]:
        """Write ``channel``'s atlas at ``layer`` as an annotated PNG at ``path``
        (``atlas.figure.save_atlas_figure``), beside ``activation``, its map for ``image``."""
        from visualizer.core.atlas.figure import save_atlas_figure  # noqa: PLC0415

        with _export_errors(path):
            saved = save_atlas_figure(
                path, atlas, layer, channel, activation=activation, image=image, colormap=colormap
            )
        return [saved]

    def _export(
        self, spec: ModelSpec, picture: Picture, options: ViewOptions, what: str, path: str
    ) -> list[Path]:
        from visualizer.core.export import (  # noqa: PLC0415
            ExportOptions,
            WriteBatch,
            output_names,
            save_grid,
            save_grid_figure,
            save_overlay,
            save_overlay_figure,
            save_timings,
        )

        analyzer, _ = self._analyzer(spec)
        result = self._result(spec, picture)
        target = self._target(spec, picture, options, None)
        if what == "timings":
            return [save_timings(path, result.timings)]
        if what in ("overlay", "overlay_figure"):
            cam = self._cam(spec, picture, result, options.cam_stage, target)
            chosen = ExportOptions(
                cam_stage=options.cam_stage,
                target=target,
                cam_colormap=options.cam_colormap,
                opacity=options.opacity,
            )
            save = save_overlay_figure if what == "overlay_figure" else save_overlay
            return [save(path, result, cam, analyzer.categories[target], chosen)]
        stages = list(STAGES) if what == "grids" else [options.stage]
        chosen = ExportOptions(stages=tuple(stages), cam_stage=None)
        names = output_names(Path(picture.name).stem, spec.model, chosen)
        # Laid out as fmviz export lays them out (near-square), whatever the pane's shape.
        with WriteBatch() as batch:  # all five grids, or none
            for stage, name in zip(stages, names, strict=False):
                weights = None
                if options.order == "gradcam":
                    weights = self._cam(spec, picture, result, stage, target).channel_weights
                grid = _grid(result.stages[stage], options, weights, name=stage)
                if what == "grid_figure":
                    ordered_by = (
                        (target, analyzer.categories[target]) if weights is not None else None
                    )
                    save_grid_figure(path, result, stage, grid, order_class=ordered_by, batch=batch)
                else:
                    file = path if what == "grid" else str(Path(path) / name)
                    save_grid(file, result, stage, grid, batch=batch)
        return batch.committed

    def _target(
        self, spec: ModelSpec, picture: Picture, options: ViewOptions, lead: ModelSpec | None
    ) -> int:
        """The class to explain: the one chosen, else the top-1 of ``lead`` (or ``spec``)."""
        if options.target is not None and options.target < self.model(spec).num_classes:
            return options.target
        return self._result(lead or spec, picture).topk[0][0]

    def _analyzer(self, spec: ModelSpec) -> tuple[Analyzer, ModelInfo]:
        if spec not in self._analyzers:
            built = self._build(spec)
            while len(self._analyzers) >= ANALYZERS_KEPT:  # the oldest goes, with its results
                self._forget(next(iter(self._analyzers)))
            self._analyzers[spec] = built
        analyzer, info = self._analyzers.pop(spec)
        if analyzer.notice and info.device != analyzer.describe_device():
            info = dataclasses.replace(info, device=analyzer.describe_device())  # fell back
        self._analyzers[spec] = analyzer, info  # the most recently used last
        return analyzer, info

    def _forget(self, spec: ModelSpec) -> None:
        del self._analyzers[spec]
        caches = (
            self._results,
            self._cams,
            self._attributions,
            self._faithfulness,
            self._layer_outputs,
        )
        for cache in caches:
            for key in [key for key in cache if key[1] == spec]:
                del cache[key]

    def _build(self, spec: ModelSpec) -> tuple[Analyzer, ModelInfo]:
        from models import ImageNetUnavailable, WeightsError  # noqa: PLC0415
        from visualizer.core.stage_summary import stage_parameters  # noqa: PLC0415

        self._progress(f"Loading {spec.label}…", None)
        fallback = None
        try:
            with _DownloadWatch(spec, self._progress):
                analyzer = _new_analyzer(spec.model, spec.weights, spec.device, **spec.options())
        except WeightsError as error:
            if spec.weights != "imagenet":
                raise
            # Offline: the reason alone ("no internet connection"); the banner says the rest.
            fallback = error.reason if isinstance(error, ImageNetUnavailable) else str(error)
            analyzer = _new_analyzer(spec.model, "random", spec.device, **spec.options())
        weights = analyzer.weights_info
        preprocessing = getattr(analyzer, "preprocessing", None)
        info = ModelInfo(
            spec=spec,
            weights=str(weights) if weights is not None else "unknown",
            device=analyzer.describe_device(),
            trained=weights is None or weights.trained,
            banner=None,
            categories=tuple(analyzer.categories),
            parameters=sum(p.numel() for p in analyzer.model.parameters()),
            fallback=fallback,
            stage_parameters=tuple(stage_parameters(analyzer.model).items()),
            labels_source=str(getattr(analyzer, "labels_source", "")),
            preprocessing=describe_preprocessing(preprocessing),
            preprocessing_detail=preprocessing.describe() if preprocessing is not None else "",
            unwrapped=getattr(weights, "unwrapped", None),
            binary=bool(getattr(analyzer, "binary", False)),
        )
        # torch, the network and the window make about a million long-lived objects; every full
        # collection would walk them all, holding the GIL for 50–250 ms and stalling the
        # window. Frozen, they are left out of collections from now on.
        gc.freeze()
        return analyzer, dataclasses.replace(info, banner=untrained_banner([info]))

    def _result(self, spec: ModelSpec, picture: Picture) -> AnalysisResult:
        key = (picture.key, spec)
        if key in self._results:
            self._results.move_to_end(key)
            return self._results[key]
        if picture.live:  # frames come many a second: only the newest one's work is kept
            self._forget_picture(self._live_key)
            self._live_key = picture.key
        else:
            self._progress(f"Analysing {picture.label} with {spec.label}…", None)
        analyzer, _ = self._analyzer(spec)
        if picture.image is None:
            result = analyzer.analyze(picture.source)
        else:
            result = analyzer.analyze(picture.image, source=picture.source)
        _remember(self._results, key, result, RESULTS_KEPT)
        return result

    def _forget_picture(self, key: int | None) -> None:
        """Drop every analysis, map and curve kept for the picture ``key``."""
        caches = (self._results, self._cams, self._attributions, self._faithfulness,
                  self._layer_outputs)  # fmt: skip
        for cache in caches:
            for kept in [kept for kept in cache if kept[0] == key]:
                del cache[kept]

    def _cam(
        self, spec: ModelSpec, picture: Picture, result: AnalysisResult, stage: str, target: int
    ) -> GradCam:
        key = (picture.key, spec, stage, target)
        if key not in self._cams:
            # The stages after this one come at no extra cost: the pass runs through them.
            analyzer, _ = self._analyzer(spec)
            later = STAGES[STAGES.index(stage) :]
            for name, cam in analyzer.gradcams(result, later, target).items():
                _remember(self._cams, (picture.key, spec, name, target), cam, CAMS_KEPT)
        return self._cams[key]

    def _map(
        self,
        spec: ModelSpec,
        picture: Picture,
        result: AnalysisResult,
        options: ViewOptions,
        target: int,
        *,
        methods: MethodSettings | None,
    ) -> np.ndarray:
        """The map ``options`` ask for beside the grid: Grad-CAM at a stage (all the later
        stages' from the same pass), else the method at its layer (``options.cam_at``)."""
        if options.cam_method == "gradcam" and options.cam_layer is None:
            return self._cam(spec, picture, result, options.cam_stage, target).map
        method = options.cam_method
        layer = options.cam_at if method in LAYER_METHODS else None
        settings = methods or MethodSettings()
        return self._attribution(
            spec, picture, result, method, target, layer=layer, settings=settings
        ).map

    def _attribution(
        self,
        spec: ModelSpec,
        picture: Picture,
        result: AnalysisResult,
        method: str,
        target: int,
        *,
        layer: str | None,
        settings: MethodSettings,
    ) -> Attribution:
        parameters = settings.for_method(method)
        key = (picture.key, spec, method, target, layer, tuple(sorted(parameters.items())))
        if key not in self._attributions:
            analyzer, _ = self._analyzer(spec)
            title = METHOD_TITLES.get(method, method)
            progress = self.control.progress(title, self._passes(f"{title} of {picture.label}"))
            attribution = analyzer.attribute(
                result, method, target, layer, progress=progress, **parameters
            )
            _remember(self._attributions, key, attribution, ATTRIBUTIONS_KEPT)
        self._attributions.move_to_end(key)
        return self._attributions[key]

    def _faithful(
        self,
        spec: ModelSpec,
        picture: Picture,
        result: AnalysisResult,
        attribution: Attribution,
        settings: MethodSettings,
    ) -> Faithfulness:
        key = (
            picture.key,
            spec,
            attribution.method,
            attribution.target,
            attribution.layer,
            tuple(sorted(settings.for_method(attribution.method).items())),
            settings.steps,
        )
        if key not in self._faithfulness:
            analyzer, _ = self._analyzer(spec)
            what = "Deletion and insertion"
            title = f"{what} of {METHOD_TITLES.get(attribution.method, attribution.method)}"
            progress = self.control.progress(what, self._passes(title))
            curves = analyzer.faithfulness(
                result, attribution, steps=settings.steps, progress=progress
            )
            _remember(self._faithfulness, key, curves, ATTRIBUTIONS_KEPT)
        return self._faithfulness[key]

    def _passes(self, title: str) -> Step:
        """Each pass said in the status bar: ``"<title>: pass 3 of 8"``."""
        return lambda done, total, _what: self._progress(
            f"{title}: pass {done} of {total}", done / total if total else None
        )

    def _layer_output(self, spec: ModelSpec, picture: Picture, layer: str) -> torch.Tensor:
        """The output ``(C, H, W)`` of ``layer`` for ``picture``: one more pass of the network,
        the first time it is asked for."""
        key = (picture.key, spec, layer)
        if key not in self._layer_outputs:
            self._progress(f"Capturing {layer} of {picture.label}…", None)
            analyzer, _ = self._analyzer(spec)
            if picture.image is None:
                result = analyzer.analyze(picture.source, layers=[layer])
            else:
                result = analyzer.analyze(picture.image, source=picture.source, layers=[layer])
            _remember(self._layer_outputs, key, result.layers[layer], LAYER_OUTPUTS_KEPT)
        self._layer_outputs.move_to_end(key)
        return self._layer_outputs[key]

    def _kind(self, spec: ModelSpec, layer: str) -> str:
        """The module type of ``layer``, e.g. ``"Conv2d"``."""
        return next((found.module_type for found in self.layers(spec) if found.name == layer), "")


def _new_analyzer(model: str, weights: str, device: str, **options: object) -> Analyzer:
    """``Analyzer(model, weights, device, **options)``; ``options``: labels, mean, std,
    resize, crop (those given)."""
    from visualizer.core import Analyzer  # noqa: PLC0415

    return Analyzer(model, weights, device, progress=False, **options)


def describe_preprocessing(preprocessing: Any) -> str:
    """``Preprocessing`` in a few words, for the status bar: ``"resize 232, crop 224, mean
    0.485,0.456,0.406, std 0.229,0.224,0.225 (ImageNet defaults)"``; grey-scale said."""
    if preprocessing is None:
        return ""

    def numbers(values: Any) -> str:
        return ",".join(f"{value:g}" for value in values)

    source = _source_in_short(preprocessing)
    text = f"resize {preprocessing.resize}, crop {preprocessing.crop}"
    if source != DEFAULT_INPUT:  # ImageNet's mean and std go without saying
        text += f", mean {numbers(preprocessing.mean)}, std {numbers(preprocessing.std)}"
    if getattr(preprocessing, "channels", 3) == 1:
        text = f"grey-scale, {text}"
    return f"{text} ({source})"


def _source_in_short(preprocessing: Any) -> str:
    """Where preprocessing values come from, in a word or two: ``"ImageNet default"``,
    ``"from the checkpoint"``, ``"given"``, ``"given, from the checkpoint"``."""
    said = ["given"] if getattr(preprocessing, "given", ()) else []
    said += ["from the checkpoint"] if getattr(preprocessing, "stored", ()) else []
    return ", ".join(said) or DEFAULT_INPUT


def untrained_banner(infos: list[ModelInfo], *, load_weights: bool = True) -> str | None:
    """One sentence for the untrained networks among ``infos``: what is shown (and why), and
    how to get trained weights (``load_weights``: File → Load weights… is one way); None when
    all are trained.

    Example: ``"Untrained ResNet101 (ImageNet weights unavailable: no internet connection):
    for trained ones, put resnet101-cd907fc2.pth in /root/.cache/torch/hub/checkpoints, or use
    File → Load weights…"``
    """
    from models.weights import imagenet_checkpoint_path  # noqa: PLC0415

    untrained = [info for info in infos if not info.trained]
    if not untrained:
        return None
    names = " and ".join(info.spec.label for info in untrained)
    reasons = "; ".join(dict.fromkeys(info.fallback for info in untrained if info.fallback))
    why = f"ImageNet weights unavailable: {reasons}" if reasons else "random weights"
    paths = [imagenet_checkpoint_path(info.spec.model) for info in untrained]
    files = " and ".join(path.name for path in paths)
    also = ", or use File → Load weights…" if load_weights and len(paths) == 1 else "."
    return f"Untrained {names} ({why}): for trained ones, put {files} in {paths[0].parent}{also}"


def _grid(
    stage: Any,
    options: ViewOptions,
    cam_weights: Any,
    *,
    on_screen: bool = False,
    name: str | None = None,
) -> Grid:
    """The grid ``options`` ask for of ``stage``, the output of ``name``; ``on_screen``: its
    columns fill the pane's shape (``options.aspect``), else near-square as ``fmviz export``
    writes it. A dataset order is ``options.dataset_order``, which is the grid's (``name``)
    only: another stage's grid is in channel order."""
    from visualizer.core.render import fitting_columns, render_grid  # noqa: PLC0415

    order: str | list[int] = options.order
    if order in DATASET_ORDERS:
        ours = name == options.grid_name and len(options.dataset_order) == stage.shape[0]
        order = list(options.dataset_order) if ours else "index"

    top = options.top_n if options.top_n > 0 else None
    columns = None
    if on_screen:
        channels, height, width = stage.shape
        count = min(channels, top) if top else channels
        columns = fitting_columns(count, height, width, options.aspect)
    return render_grid(
        stage,
        colormap=options.colormap,
        scale=options.scale,
        order=order,
        weights=cam_weights if order == "gradcam" else None,
        top=top,
        columns=columns,
    )


@contextlib.contextmanager
def _export_errors(path: str) -> Iterator[None]:
    """An ``OSError`` while writing ``path`` becomes an ``ExportError`` naming it."""
    try:
        yield
    except ExportError:
        raise
    except OSError as error:
        raise ExportError(f"{path}: cannot be written ({error.strerror or error})") from None


def _layer_rows(analyzer: Analyzer, result: AnalysisResult) -> tuple[LayerRow, ...]:
    from models import stage_module_names  # noqa: PLC0415
    from visualizer.core.stage_summary import layer_stages  # noqa: PLC0415

    names = [name for name, _, _ in result.timings]
    stages = layer_stages(names, stage_module_names(analyzer.model))
    return tuple(
        LayerRow(name, kind, tuple(result.layer_shapes.get(name, ())), ms, stage)
        for (name, kind, ms), stage in zip(result.timings, stages, strict=True)
    )


def _remember(cache: OrderedDict, key: Hashable, value: Any, limit: int) -> None:
    cache[key] = value
    while len(cache) > limit:
        cache.popitem(last=False)


class _DownloadWatch:
    """While ImageNet weights download, reports how much of the file has arrived."""

    def __init__(self, spec: ModelSpec, progress: Progress) -> None:
        self._spec, self._progress = spec, progress
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> _DownloadWatch:
        if self._spec.weights != "imagenet":
            return self
        from models.weights import imagenet_checkpoint_path, imagenet_weights  # noqa: PLC0415

        path = imagenet_checkpoint_path(self._spec.model)
        if path.is_file():
            return self
        megabytes = float(imagenet_weights(self._spec.model).meta.get("_file_size", 0.0))
        self._thread = threading.Thread(
            target=self._watch, args=(path, megabytes * 2**20), daemon=True
        )
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def _watch(self, path: Path, total: float) -> None:
        what = f"Downloading ImageNet weights for {self._spec.label}"
        while not self._stop.wait(DOWNLOAD_POLL_S):
            # torch.hub writes to "<file>.<random>.partial" beside the file, then renames it.
            done = 0
            for part in path.parent.glob(path.name + ".*.partial"):
                try:
                    done += part.stat().st_size
                except OSError:  # renamed or removed since it was listed
                    continue
            fraction = min(done / total, 1.0) if total > 0 else None
            self._progress(f"{what}: {done / 2**20:.0f} of {total / 2**20:.0f} MB", fraction)
