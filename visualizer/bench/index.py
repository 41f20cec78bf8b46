"""P11–P13: ``fmviz index`` against a bare torchvision inference loop, its peak memory on many
images against few, and its Ray backend against the local one (DESIGN.md §8).

The images are made here: ``images`` deterministic JPEGs of about 320×240 pixels (a colour
gradient, a few shapes, noise; ``make_images``) in a temporary folder, removed at the end.

- **P11** times ``build_index`` (local backend, the five stages, top-9, in this process, the
  Parquet tables written) on them against what a user of torchvision writes: the same
  architecture holding the same state dict, ``eval()``, ``torch.inference_mode()``, over a
  ``DataLoader`` with the same batch size, workers and memory pinning, whose dataset opens
  each file with ``PIL.Image.open(path).convert("RGB")`` and applies torchvision's transform
  with the analyzer's values (``Resize``, ``CenterCrop``, ``ToTensor``, ``Normalize``), each
  batch's predicted classes copied to the host. The ratio is images/s through fmviz ÷ through
  torchvision, medians of ``runs`` timed runs, interleaved (ABBA).
- **P12** runs ``python -m visualizer index`` in a fresh process on all the images and on a
  tenth of them, through a small wrapper process (``_WRAPPER``) that waits for it and reads
  ``getrusage(RUSAGE_CHILDREN).ru_maxrss``: the peak resident set of the largest process of
  the tree (the index process itself; its ``DataLoader`` workers are forks of it), kept by the
  kernel, so no peak is missed. The ratio is judged on that. The wrapper also polls the whole
  process tree (the workers included) every ``POLL_S`` seconds and reports the largest total
  it saw: proportional set sizes (``/proc/PID/smaps_rollup``, shared pages counted once) where
  the kernel gives them, else resident sets; shown, not judged.
- **P13** runs the same command with ``--backend ray`` on all the images, and compares the
  wall time of the whole command (interpreter, imports, network, Ray's start-up and
  shutdown: what a user waits for) with the local run of P12, both through the same wrapper.

Per-image costs, for estimating a run over a large dataset (the README's ImageNet estimate):
reading and preprocessing, in seconds per image in one process (``ImageFiles``: fmviz's
``load_image`` and transform; and torchvision's reading, for comparison), and the network, in
seconds per image of a batch of ``batch_size`` (``LayerReducer``: the forward pass to C5 with
the per-channel top-K; and torchvision's whole forward), medians after warm-up passes.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import math
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageDraw
from torch import nn
from torch.utils.data import DataLoader, Dataset

from models.stages import STAGE_NAMES
from visualizer.core.analysis import Analyzer
from visualizer.core.atlas import build_index, image_paths
from visualizer.core.atlas.dataset import ImageFiles, collate
from visualizer.core.atlas.reducer import LayerReducer
from visualizer.core.preprocess import Preprocessing

TARGETS = {"P11": 0.85, "P12": 1.10, "P13": 1.5}
AT_LEAST = ("P11",)  # the higher the better; the others: the lower
KEYS = tuple(TARGETS)
WHAT = {
    "P11": "fmviz index (local backend, C1–C5, top-9, Parquet written) images/s vs a bare "
    "inference_mode torchvision loop over a DataLoader with the same batch size and workers",
    "P12": "peak memory of fmviz index, all the images vs a tenth of them (each a fresh process)",
    "P13": "fmviz index --backend ray on this machine vs the local backend, wall time of the "
    "whole command (Ray's start-up included)",
}
DEFAULT_IMAGES = 2000
SMALL_SHARE = 10  # P12's small run indexes a tenth of the images
TOP = 9
IMAGE_SIZE = (320, 240)  # width, height of most generated images; a quarter are portrait
SEED = 20261130
READ_SAMPLE = 48  # images read in this process to time reading and preprocessing
IMAGENET_IMAGES = 1_281_167  # ILSVRC-2012's training set
POLL_S = 0.2  # seconds between samples of a subprocess tree's memory
RSS_MEASURE = "peak resident set of the largest process (getrusage RUSAGE_CHILDREN ru_maxrss)"
INDEXED = re.compile(r"indexed (\d+) images.* in ([0-9.]+) s")

Note = Callable[[str], None]
Progress = Callable[[int, int, str], None]  # (phases done, phases in all, what runs now)


# --- the images ---------------------------------------------------------------------------------


def make_images(folder: str | os.PathLike[str], count: int, *, seed: int = SEED) -> list[Path]:
    """Write ``count`` JPEGs (quality 90) into ``folder``, each a colour gradient with three to
    six filled shapes and Gaussian noise, about ``IMAGE_SIZE`` (every fourth one portrait).

    Image ``i`` depends only on ``seed`` and ``i``; they are written by a thread per core
    (Pillow and numpy release the GIL). Returns their paths, in order.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / f"{number:05d}.jpg" for number in range(count)]

    def write(number: int) -> None:
        rng = np.random.default_rng([seed, number])
        width = int(IMAGE_SIZE[0] + rng.integers(-32, 33))
        height = int(IMAGE_SIZE[1] + rng.integers(-24, 25))
        if number % 4 == 3:
            width, height = height, width
        start, end = rng.uniform(0, 255, (2, 3))
        ramp = np.linspace(0.0, 1.0, width)[np.newaxis, :, np.newaxis]
        pixels = start + (end - start) * ramp + rng.normal(0, 12, (height, width, 3))
        image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "RGB")
        draw = ImageDraw.Draw(image)
        for _ in range(int(rng.integers(3, 7))):
            x0, x1 = sorted(rng.integers(0, width, 2).tolist())
            y0, y1 = sorted(rng.integers(0, height, 2).tolist())
            colour = tuple(int(c) for c in rng.integers(0, 256, 3))
            if rng.random() < 0.5:
                draw.ellipse((x0, y0, x1, y1), fill=colour)
            else:
                draw.rectangle((x0, y0, x1, y1), fill=colour)
        image.save(paths[number], quality=90)

    with ThreadPoolExecutor(os.cpu_count() or 1) as pool:
        list(pool.map(write, range(count)))
    return paths


# --- the torchvision reference ------------------------------------------------------------------


def torchvision_transform(preprocessing: Preprocessing) -> Callable[[Image.Image], torch.Tensor]:
    """torchvision's evaluation transform with ``preprocessing``'s values: ``Resize`` of the
    shorter side (antialiased), ``CenterCrop``, ``ToTensor``, ``Normalize`` (what
    ``ResNet101_Weights.DEFAULT.transforms()`` does for the ImageNet values)."""
    from torchvision import transforms

    p = preprocessing
    return transforms.Compose(
        [
            transforms.Resize(
                p.resize, interpolation=transforms.InterpolationMode(p.interpolation)
            ),
            transforms.CenterCrop(p.crop),
            transforms.ToTensor(),
            transforms.Normalize(p.mean, p.std),
        ]
    )


class TorchvisionFiles(Dataset):
    """The reference's dataset: ``Image.open(path).convert(mode)`` and ``transform``."""

    def __init__(
        self,
        paths: Sequence[str],
        transform: Callable[[Image.Image], torch.Tensor],
        mode: str = "RGB",
    ) -> None:
        self.paths = paths
        self.transform = transform
        self.mode = mode

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, number: int) -> torch.Tensor:
        with Image.open(self.paths[number]) as image:
            return self.transform(image.convert(self.mode))


def torchvision_twin(analyzer: Analyzer) -> nn.Module:
    """torchvision's own network of ``analyzer``'s architecture and head, holding its state
    dict, in eval mode on its device (a one-channel network's first convolution made so)."""
    import torchvision

    twin = getattr(torchvision.models, analyzer.arch)(
        weights=None, num_classes=analyzer.num_classes
    )
    if analyzer.in_channels != 3:
        name, first = next(
            (name, module) for name, module in twin.named_modules() if isinstance(module, nn.Conv2d)
        )
        parent, _, child = name.rpartition(".")
        replacement = nn.Conv2d(
            analyzer.in_channels,
            first.out_channels,
            first.kernel_size,
            first.stride,
            first.padding,
            bias=first.bias is not None,
        )
        setattr(twin.get_submodule(parent) if parent else twin, child, replacement)
    twin.load_state_dict(analyzer.model.state_dict())
    return twin.to(analyzer.device).eval()


def torchvision_loop(
    twin: nn.Module,
    paths: Sequence[str],
    transform: Callable[[Image.Image], torch.Tensor],
    *,
    batch_size: int,
    workers: int,
    device: torch.device,
    mode: str = "RGB",
) -> float:
    """One pass of the reference over ``paths``: seconds from making the ``DataLoader`` to the
    last batch's predicted classes on the host."""
    start = time.perf_counter()
    loader = DataLoader(
        TorchvisionFiles(paths, transform, mode),
        batch_size=batch_size,
        num_workers=workers,
        pin_memory=device.type == "cuda",  # as fmviz index does
    )
    predicted = []
    with torch.inference_mode():
        for x in loader:
            predicted.append(twin(x.to(device, non_blocking=True)).argmax(1).cpu())
    return time.perf_counter() - start


# --- the measurements ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Throughput:
    """P11 for one network: seconds of each timed pass over ``images`` images, each side.

    ``fmviz_s`` times the whole ``build_index`` call; ``fmviz_loop_s`` is what it reports of
    it (``IndexReport.seconds``: the batches, without listing the images, the receptive fields
    before and writing the tables after), to tell fixed costs from per-image ones.
    """

    network: str
    images: int
    fmviz_s: list[float]
    torchvision_s: list[float]
    fmviz_loop_s: list[float] = field(default_factory=list)

    @property
    def fmviz_images_per_s(self) -> float:
        return self.images / statistics.median(self.fmviz_s)

    @property
    def torchvision_images_per_s(self) -> float:
        return self.images / statistics.median(self.torchvision_s)

    @property
    def ratio(self) -> float:
        """Images/s through fmviz index ÷ through the torchvision loop."""
        return self.fmviz_images_per_s / self.torchvision_images_per_s


@dataclass(frozen=True)
class PerImage:
    """One network's costs per image, in seconds, on the device, for estimates.

    Attributes:
        read_s: fmviz's ``load_image`` and transform, one image in one process.
        read_torchvision_s: the reference's ``Image.open(...).convert`` and transform.
        network_s: ``LayerReducer`` (forward to C5, top-K of every channel) per image of a
            batch of ``batch_size``, median of the timed batches.
        network_torchvision_s: torchvision's whole forward per image of the same batch.
    """

    network: str
    batch_size: int
    read_s: float
    read_torchvision_s: float
    network_s: float
    network_torchvision_s: float

    def pass_seconds(self, images: int, workers: int, device: torch.device) -> float:
        """Expected seconds of an index over ``images`` images: on an accelerator, reading
        (``workers`` processes) and the network overlap, the slower sets the pace; on the CPU
        they share the cores, the network using them all, so reading adds its share."""
        if workers == 0:
            return images * (self.read_s + self.network_s)
        if device.type == "cpu":
            return images * (self.network_s + self.read_s / (os.cpu_count() or 1))
        return images * max(self.network_s, self.read_s / workers)


@dataclass(frozen=True)
class CommandRun:
    """``python -m visualizer index`` in a fresh process, through the wrapper.

    Attributes:
        backend: ``"local"`` or ``"ray"``.
        images: images it was given.
        status: its exit status.
        wall_s: seconds from its start to its exit.
        indexing_s: what it reported itself (``build_index``'s seconds), or None.
        largest_mib: peak resident set of the tree's largest process (``ru_maxrss``), MiB.
        tree_mib: the largest total of the tree's processes seen, polled, MiB.
        tree_measure: what ``tree_mib`` sums ("proportional set size (PSS)" or "resident set").
        processes: the most processes seen in the tree at once.
        error: its last line on stderr when it failed, else None.
    """

    backend: str
    images: int
    status: int
    wall_s: float
    indexing_s: float | None
    largest_mib: float
    tree_mib: float
    tree_measure: str
    processes: int
    error: str | None = None

    def as_json(self) -> dict[str, Any]:
        return {
            "backend": self.backend,
            "images": self.images,
            "status": self.status,
            "wall_s": self.wall_s,
            "indexing_s": self.indexing_s,
            "largest_process_peak_mib": self.largest_mib,
            "tree_peak_mib": self.tree_mib,
            "tree_measure": self.tree_measure,
            "processes": self.processes,
            **({"error": self.error} if self.error else {}),
        }


@dataclass
class IndexBenchReport:
    """Everything ``fmviz bench --index`` measured, and the ratios it gives."""

    device: str
    networks: list[str]
    weights: str
    images: int
    small_images: int
    batch_size: int
    workers: int
    runs: int
    preprocessing: dict[str, str]  # each network's, in words
    throughput: dict[str, Throughput]
    per_image: dict[str, PerImage]
    memory_network: str | None = None  # the network of P12 and P13
    small: CommandRun | None = None  # P12, a tenth of the images
    large: CommandRun | None = None  # P12 and P13's local side, all of them
    ray: CommandRun | None = None  # P13
    notes: dict[str, str] = field(default_factory=dict)  # key → why not measured
    phases_s: dict[str, float] = field(default_factory=dict)
    expected_s: dict[str, float] = field(default_factory=dict)
    # Hours for ImageNet's training set from the per-image costs (``PerImage.pass_seconds``).
    imagenet_hours: dict[str, float] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)

    @property
    def ratios(self) -> dict[str, float]:
        """P11 (the slowest network's), P12 and P13, those measured."""
        ratios = {}
        if self.throughput:
            ratios["P11"] = min(t.ratio for t in self.throughput.values())
        if self.small is not None and self.large is not None:
            ratios["P12"] = self.large.largest_mib / self.small.largest_mib
        if self.ray is not None and self.large is not None and self.ray.status == 0:
            ratios["P13"] = self.ray.wall_s / self.large.wall_s
        return ratios

    def as_json(self) -> dict[str, Any]:
        """Machine-readable: the target entries (unrounded ratios, as ``fmviz bench``'s), the
        figures they come from, per-image costs in seconds, phases' seconds."""
        ratios = self.ratios
        entries: dict[str, dict[str, Any]] = {}
        for key in KEYS:
            value = ratios.get(key)
            entry: dict[str, Any] = {
                "ratio": value,
                "target": TARGETS[key],
                "compare": "≥" if key in AT_LEAST else "≤",
                "ok": None if value is None else _met(key, value),
                "unit": "×",
                "what": WHAT[key],
            }
            if value is None:
                entry["note"] = self.notes.get(key, "not measured")
            entries[key] = entry
        entries["P11"]["networks"] = {
            name: {
                "ratio": t.ratio,
                "ok": _met("P11", t.ratio),
                "fmviz_images_per_s": t.fmviz_images_per_s,
                "torchvision_images_per_s": t.torchvision_images_per_s,
                "fmviz_s": t.fmviz_s,
                "torchvision_s": t.torchvision_s,
                "fmviz_loop_s": t.fmviz_loop_s,
            }
            for name, t in self.throughput.items()
        }
        if self.small is not None and self.large is not None:
            entries["P12"] |= {
                "network": self.memory_network,
                "measure": RSS_MEASURE,
                "peak_mib": {"large": self.large.largest_mib, "small": self.small.largest_mib},
                "tree_peak_mib": {"large": self.large.tree_mib, "small": self.small.tree_mib},
                "tree_measure": f"{self.large.tree_measure} of every process, summed, "
                f"polled every {POLL_S:g} s",
            }
        if self.ray is not None and self.large is not None:
            entries["P13"] |= {
                "network": self.memory_network,
                "ray_s": self.ray.wall_s,
                "local_s": self.large.wall_s,
                "ray_indexing_s": self.ray.indexing_s,
                "local_indexing_s": self.large.indexing_s,
            }
        runs = {"small": self.small, "large": self.large, "ray": self.ray}
        return {
            "bench": "index",
            "device": self.device,
            "networks": self.networks,
            "weights": self.weights,
            "images": self.images,
            "small_images": self.small_images,
            "image_size": "JPEG, quality 90, about {}×{}, a quarter portrait".format(*IMAGE_SIZE),
            "batch_size": self.batch_size,
            "workers": self.workers,
            "top": TOP,
            "stages": list(STAGE_NAMES),
            "runs": self.runs,
            "preprocessing": self.preprocessing,
            **entries,
            "ratios": ratios,
            "targets": {key: TARGETS[key] for key in ratios},
            "met": {key: _met(key, value) for key, value in ratios.items()},
            "per_image_s": {
                name: {
                    "read": p.read_s,
                    "read_torchvision": p.read_torchvision_s,
                    "network": p.network_s,
                    "network_torchvision": p.network_torchvision_s,
                    "batch_size": p.batch_size,
                }
                for name, p in self.per_image.items()
            },
            "imagenet_estimate_h": {
                "images": IMAGENET_IMAGES,
                "workers": self.workers,
                "from_costs": self.imagenet_hours,
                "at_measured_rate": {
                    name: IMAGENET_IMAGES / t.fmviz_images_per_s / 3600
                    for name, t in self.throughput.items()
                },
            },
            "commands": {name: run.as_json() for name, run in runs.items() if run is not None},
            "phases_s": self.phases_s,
            "expected_s": self.expected_s,
            "versions": self.versions,
        }


def _met(key: str, ratio: float) -> bool:
    target = TARGETS[key]
    return ratio >= target if key in AT_LEAST else ratio <= target


class _Phases:
    """The bench's phases: progress reports, notes of expected times, seconds each took."""

    def __init__(self, names: Sequence[str], progress: Progress | None, note: Note | None):
        self.names = list(names)
        self.progress = progress
        self.note = note
        self.seconds: dict[str, float] = {}
        self.expected: dict[str, float] = {}

    def expect(self, name: str, seconds: float, line: str) -> None:
        """Record ``name``'s expected ``seconds`` and tell the user ``line``."""
        self.expected[name] = seconds
        if self.note is not None:
            self.note(line)

    @contextlib.contextmanager
    def phase(self, name: str) -> Iterator[None]:
        """Time the phase ``name`` (reported to ``progress`` as it starts)."""
        if self.progress is not None:
            done = sum(1 for known in self.names if known in self.seconds)
            self.progress(done, len(self.names), name)
        started = time.perf_counter()
        yield
        self.seconds[name] = time.perf_counter() - started


def run_index_bench(
    networks: Sequence[str],
    device: str = "auto",
    *,
    weights: str = "random",
    images: int = DEFAULT_IMAGES,
    batch_size: int = 32,
    workers: int = 2,
    runs: int | None = None,
    resize: int | None = None,
    crop: int | None = None,
    memory_network: str | None = None,
    ray: bool = True,
    commands: bool = True,
    progress: Progress | None = None,
    note: Note | None = None,
) -> IndexBenchReport:
    """Measure P11 for each of ``networks``, then P12 and P13 for ``memory_network`` (default
    the first of ``networks``), on ``images`` generated images.

    Args:
        weights: ``"random"``, ``"imagenet"`` or a checkpoint's path, for every network.
        runs: timed passes of each side of P11 (default 3 on an accelerator, 1 on the CPU).
        resize, crop: the preprocessing's (default the network's own).
        ray: measure P13 (it is skipped, with a note, where Ray is not installed).
        commands: run the commands of P12 and P13 (False: P11 and per-image costs only).
        progress: called with (phases done, phases in all, the phase starting).
        note: called with a line for the user: the time each phase is expected to take.

    Raises:
        DeviceError, WeightsError, PreprocessingError: as ``Analyzer``.
        RuntimeError: a command of P12 that failed (its last line on stderr).
        ValueError: no network named.
    """
    if not networks:
        raise ValueError("name at least one network")
    names = ["images", *(f"P11 {name}" for name in networks)]
    if commands:
        names += ["P12", *(["P13"] if ray else [])]
    phases = _Phases(names, progress, note)
    settings = {"batch_size": batch_size, "workers": workers, "resize": resize, "crop": crop}
    with tempfile.TemporaryDirectory(prefix="fmviz-bench-index-") as temporary:
        root = Path(temporary)
        with phases.phase("images"):
            make_images(root / "images", images)
        paths = image_paths([root / "images"])
        throughput: dict[str, Throughput] = {}
        per_image: dict[str, PerImage] = {}
        preprocessing: dict[str, str] = {}
        for name in networks:
            with phases.phase(f"P11 {name}"):
                analyzer = Analyzer(
                    name,
                    weights,
                    device,
                    timings=False,
                    warm_up=False,
                    progress=False,
                    resize=resize,
                    crop=crop,
                )
                resolved = analyzer.device
                preprocessing[name] = analyzer.preprocessing.describe()
                description = analyzer.describe_device()
                chosen_runs = runs or (1 if resolved.type == "cpu" else 3)
                per_image[name], throughput[name] = _network_phase(
                    analyzer, root, paths, phases, runs=chosen_runs, batch_size=batch_size,
                    workers=workers,
                )  # fmt: skip
                del analyzer
                _release(resolved)
        report = IndexBenchReport(
            device=description,
            networks=list(networks),
            weights=weights,
            images=images,
            small_images=max(1, images // SMALL_SHARE),
            batch_size=batch_size,
            workers=workers,
            runs=chosen_runs,
            preprocessing=preprocessing,
            throughput=throughput,
            per_image=per_image,
            phases_s=phases.seconds,
            expected_s=phases.expected,
            imagenet_hours={
                name: cost.pass_seconds(IMAGENET_IMAGES, workers, resolved) / 3600
                for name, cost in per_image.items()
            },
            versions=_versions(),
        )
        if not commands:
            report.notes |= {key: "not measured (the commands were not run)" for key in KEYS[1:]}
            return report
        report.memory_network = memory_network or networks[0]
        arguments = _index_arguments(report.memory_network, weights, resolved, **settings)
        _command_phases(report, root, paths, arguments, phases, ray=ray)
    return report


def _network_phase(
    analyzer: Analyzer,
    root: Path,
    paths: Sequence[str],
    phases: _Phases,
    *,
    runs: int,
    batch_size: int,
    workers: int,
) -> tuple[PerImage, Throughput]:
    """One network's per-image costs and P11."""
    twin = torchvision_twin(analyzer)
    transform = torchvision_transform(analyzer.preprocessing)
    mode = "L" if analyzer.preprocessing.channels == 1 else "RGB"
    costs = per_image_costs(analyzer, twin, paths, transform, batch_size=batch_size, mode=mode)
    expected = 2 * runs * costs.pass_seconds(len(paths), workers, analyzer.device)
    phases.expect(
        f"P11 {analyzer.arch}",
        expected,
        f"P11 {analyzer.arch}: {2 * runs} passes over {len(paths)} images, expected "
        f"≈ {_seconds(expected)} ({_ms(costs.read_s)} reading and {_ms(costs.network_s)} "
        "network per image)",
    )
    throughput = _throughput(
        analyzer,
        twin,
        root,
        paths,
        transform,
        runs=runs,
        batch_size=batch_size,
        workers=workers,
        mode=mode,
    )
    return costs, throughput


def _command_phases(
    report: IndexBenchReport,
    root: Path,
    paths: Sequence[str],
    arguments: Sequence[str],
    phases: _Phases,
    *,
    ray: bool,
) -> None:
    """P12 and P13 into ``report``: ``fmviz index`` on a tenth of the images and on all of
    them, then with Ray (unless ``ray`` is False or Ray is not installed: a note says so)."""
    images, small = report.images, report.small_images
    small_list = root / "small.txt"
    small_list.write_text("\n".join(paths[:small]) + "\n", encoding="utf-8")
    rate = report.throughput.get(report.memory_network or "")
    with phases.phase("P12"):
        if rate is not None:
            phases.expect(
                "P12",
                (images + small) / rate.fmviz_images_per_s,
                f"P12: fmviz index on {small} and on {images} images, each a fresh process, "
                f"expected ≈ {_seconds((images + small) / rate.fmviz_images_per_s)} plus two "
                "start-ups",
            )
        report.small = run_index_command(
            [str(small_list)], root / "index-small", arguments, images=small
        )
        report.large = run_index_command(
            [str(root / "images")], root / "index-large", arguments, images=images
        )
    for run in (report.small, report.large):
        if run.status != 0:
            raise RuntimeError(f"fmviz index failed (exit status {run.status}): {run.error}")
    if not ray:
        report.notes["P13"] = "skipped (--no-ray)"
        return
    if not ray_installed():
        report.notes["P13"] = "skipped: Ray is not installed (pip install 'fmviz[ray]')"
        return
    with phases.phase("P13"):
        phases.expect(
            "P13",
            report.large.wall_s,
            f"P13: fmviz index --backend ray on {images} images, expected ≈ "
            f"{_seconds(report.large.wall_s)} plus Ray's start-up (the local run took that)",
        )
        report.ray = run_index_command(
            [str(root / "images")], root / "index-ray", arguments, images=images, backend="ray"
        )
    if report.ray.status != 0:
        report.notes["P13"] = f"the Ray run failed: {report.ray.error}"


def per_image_costs(
    analyzer: Analyzer,
    twin: nn.Module,
    paths: Sequence[str],
    transform: Callable[[Image.Image], torch.Tensor],
    *,
    batch_size: int,
    mode: str = "RGB",
) -> PerImage:
    """Seconds per image: reading and preprocessing (``READ_SAMPLE`` images, in this process,
    each side), and the network on one batch of ``batch_size`` of them (medians of 10 timed
    passes after 3 warm-up ones on an accelerator, of 1 after 1 on the CPU; these passes also
    warm both networks up for P11)."""
    count = min(len(paths), max(READ_SAMPLE, batch_size))
    sample = list(paths[:count])
    files = ImageFiles(sample, analyzer.preprocessing)
    start = time.perf_counter()
    items = [files[number] for number in range(count)]
    read_s = (time.perf_counter() - start) / count
    reference = TorchvisionFiles(sample, transform, mode)
    start = time.perf_counter()
    for number in range(count):
        reference[number]
    read_torchvision_s = (time.perf_counter() - start) / count
    batch = collate(items[:batch_size])
    size = len(batch.numbers)
    reducer = LayerReducer(analyzer, list(STAGE_NAMES), TOP)
    x = analyzer.preprocessing.normalized(batch.pixels.to(analyzer.device))
    warmup, timed = (1, 1) if analyzer.device.type == "cpu" else (3, 10)
    sync = _synchroniser(analyzer.device)

    def reference_forward() -> None:
        with torch.inference_mode():
            twin(x).argmax(1).cpu()

    times = _interleaved(
        {"fmviz": lambda: reducer(batch), "torchvision": reference_forward},
        warmup,
        timed,
        sync,
    )
    return PerImage(
        network=analyzer.arch,
        batch_size=size,
        read_s=read_s,
        read_torchvision_s=read_torchvision_s,
        network_s=statistics.median(times["fmviz"]) / size,
        network_torchvision_s=statistics.median(times["torchvision"]) / size,
    )


def _throughput(
    analyzer: Analyzer,
    twin: nn.Module,
    root: Path,
    paths: Sequence[str],
    transform: Callable[[Image.Image], torch.Tensor],
    *,
    runs: int,
    batch_size: int,
    workers: int,
    mode: str,
) -> Throughput:
    """P11's passes, ``runs`` a side, interleaved ABBA (torchvision first in even runs)."""
    out = root / f"index-{analyzer.arch}"
    sync = _synchroniser(analyzer.device)
    loops: list[float] = []

    def fmviz() -> None:
        report = build_index(
            [root / "images"],
            out,
            analyzer,
            layers=STAGE_NAMES,
            top=TOP,
            batch_size=batch_size,
            workers=workers,
            backend="local",
        )
        loops.append(report.seconds)

    def reference() -> None:
        torchvision_loop(
            twin,
            paths,
            transform,
            batch_size=batch_size,
            workers=workers,
            device=analyzer.device,
            mode=mode,
        )

    times = _interleaved({"torchvision": reference, "fmviz": fmviz}, 0, runs, sync)
    return Throughput(analyzer.arch, len(paths), times["fmviz"], times["torchvision"], loops)


def _interleaved(
    cases: dict[str, Callable[[], object]],
    warmup: int,
    runs: int,
    sync: Callable[[], None],
) -> dict[str, list[float]]:
    """Seconds of each case in each of ``runs`` runs after ``warmup`` untimed ones; every
    other run in reverse order, so that order favours neither side."""
    times: dict[str, list[float]] = {name: [] for name in cases}
    for run in range(warmup + runs):
        order = list(cases.items()) if run % 2 == 0 else list(reversed(cases.items()))
        for name, case in order:
            sync()
            start = time.perf_counter()
            case()
            sync()
            if run >= warmup:
                times[name].append(time.perf_counter() - start)
    return times


# --- fmviz index in a fresh process (P12, P13) --------------------------------------------------

# Runs the command given after the result file's name, waits for it and writes what it
# measured as JSON. ru_maxrss of RUSAGE_CHILDREN is the largest resident set any process of the
# tree reached (KiB on Linux, bytes on macOS). Meanwhile a thread sums the memory of the tree's
# processes every POLL_S seconds, found through /proc (Linux; elsewhere the sum stays 0).
_WRAPPER = r"""
import json, os, resource, subprocess, sys, threading, time
result_file, interval, command = sys.argv[1], float(sys.argv[2]), sys.argv[3:]

def parents():
    found = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open(f"/proc/{name}/stat") as stat:
                    found[int(name)] = int(stat.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                pass
    return found

def tree(root):
    children = {}
    for pid, parent in parents().items():
        children.setdefault(parent, []).append(pid)
    pids, todo = [], [root]
    while todo:
        pid = todo.pop()
        pids.append(pid)
        todo.extend(children.get(pid, []))
    return pids

def kib(pid, pss):
    try:
        if pss:
            with open(f"/proc/{pid}/smaps_rollup") as smaps:
                for line in smaps:
                    if line.startswith("Pss:"):
                        return int(line.split()[1])
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0

pss = os.path.exists(f"/proc/{os.getpid()}/smaps_rollup")
peak = {"kib": 0, "processes": 0}
stop = threading.Event()
start = time.perf_counter()
child = subprocess.Popen(command)

def poll():
    while not stop.is_set():
        if os.path.isdir("/proc"):
            pids = tree(child.pid)
            peak["kib"] = max(peak["kib"], sum(kib(pid, pss) for pid in pids))
            peak["processes"] = max(peak["processes"], len(pids))
        stop.wait(interval)

watcher = threading.Thread(target=poll, daemon=True)
watcher.start()
status = child.wait()
wall = time.perf_counter() - start
stop.set()
watcher.join()
largest = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
largest_kib = largest / 1024 if sys.platform == "darwin" else largest
with open(result_file, "w") as out:
    json.dump({"status": status, "wall_s": wall, "largest_kib": largest_kib,
               "tree_kib": peak["kib"], "processes": peak["processes"],
               "tree_measure": "proportional set size (PSS)" if pss else "resident set"}, out)
"""


def _index_arguments(
    network: str,
    weights: str,
    device: torch.device,
    *,
    batch_size: int,
    workers: int,
    resize: int | None,
    crop: int | None,
) -> list[str]:
    """``fmviz index``'s options for the settings of P11 (after the sources)."""
    arguments = ["--model", network, "--weights", weights, "--device", device.type]
    arguments += ["--stages", ",".join(STAGE_NAMES), "--top", str(TOP)]
    arguments += ["--batch-size", str(batch_size), "--workers", str(workers)]
    if resize is not None:
        arguments += ["--resize", str(resize)]
    if crop is not None:
        arguments += ["--crop", str(crop)]
    return arguments


def run_index_command(
    sources: Sequence[str],
    out: Path,
    arguments: Sequence[str],
    *,
    images: int,
    backend: str = "local",
) -> CommandRun:
    """``python -m visualizer index SOURCES --out OUT ARGUMENTS --backend BACKEND`` through
    ``_WRAPPER``, with this interpreter and this checkout first on the path; returns what it
    measured (``images``: how many the sources hold, for the report)."""
    root = str(Path(__file__).resolve().parents[2])
    path = os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))
    environment = {**os.environ, "PYTHONPATH": path, "RAY_USAGE_STATS_ENABLED": "0"}
    result = out.with_suffix(".json")
    stdout, stderr = out.with_suffix(".out"), out.with_suffix(".err")
    command = [sys.executable, "-m", "visualizer", "index", *sources, "--out", str(out)]
    command += [*arguments, "--backend", backend]
    with stdout.open("w") as out_file, stderr.open("w") as err_file:
        wrapper = subprocess.run(  # noqa: S603 - this interpreter, our own script and command
            [sys.executable, "-c", _WRAPPER, str(result), str(POLL_S), *command],
            stdout=out_file,
            stderr=err_file,
            env=environment,
            check=False,
        )
    said = stdout.read_text(encoding="utf-8", errors="replace")
    complaint = stderr.read_text(encoding="utf-8", errors="replace").strip().splitlines()
    if wrapper.returncode != 0 or not result.is_file():
        raise RuntimeError(f"the wrapper of fmviz index failed: {(complaint or ['?'])[-1]}")
    measured = json.loads(result.read_text(encoding="utf-8"))
    indexed = INDEXED.search(said)
    errors = [line for line in complaint if line.startswith("error:")]
    failed = measured["status"] != 0
    return CommandRun(
        backend=backend,
        images=images,
        status=measured["status"],
        wall_s=measured["wall_s"],
        indexing_s=float(indexed.group(2)) if indexed else None,
        largest_mib=measured["largest_kib"] / 1024,
        tree_mib=measured["tree_kib"] / 1024,
        tree_measure=measured["tree_measure"],
        processes=measured["processes"],
        error=((errors or complaint or ["no output"])[-1]) if failed else None,
    )


# --- helpers ------------------------------------------------------------------------------------


def ray_installed() -> bool:
    """True where Ray can be found (``fmviz[ray]``), without importing it (seconds)."""
    return importlib.util.find_spec("ray") is not None


def _synchroniser(device: torch.device) -> Callable[[], None]:
    if device.type == "cuda":
        return lambda: torch.cuda.synchronize(device)
    if device.type == "mps":
        return torch.mps.synchronize
    return lambda: None


def _release(device: torch.device) -> None:
    """Let go of a network before the next one is built."""
    import gc  # noqa: PLC0415

    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def _versions() -> dict[str, str]:
    import PIL  # noqa: PLC0415
    import torchvision

    versions = {"torch": torch.__version__, "torchvision": torchvision.__version__}
    versions["pillow"] = PIL.__version__
    if ray_installed():
        from importlib.metadata import version  # noqa: PLC0415

        versions["ray"] = version("ray")
    return versions


def _seconds(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    if seconds < 90:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.1f} min"


def _ms(seconds: float) -> str:
    return f"{seconds * 1e3:.1f} ms"
