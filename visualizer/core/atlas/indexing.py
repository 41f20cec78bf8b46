"""``build_index``: every channel's top images over a dataset, on this machine or with Ray.

The images are numbered in sorted path order and cut into batches of ``batch_size`` by
number; a batch is read by ``DataLoader`` workers (or Ray tasks), summarised by the network
(``LayerReducer``) and merged into the running summary (``ChannelTopK.merged``). Every
``save_every`` seconds the summary and the batches done are saved, so that an interrupted run
resumes where it stopped; since merging is associative and batches are always the same
images, a resumed run, a Ray run and a local run give the same index.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import os
import platform
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from models.stages import STAGE_NAMES
from visualizer.core.analysis import Analyzer
from visualizer.core.atlas.dataset import batches
from visualizer.core.atlas.identity import network_identity, preprocessing_identity
from visualizer.core.atlas.receptive_field import receptive_fields
from visualizer.core.atlas.reducer import LayerReducer, layer_modules, layer_shapes
from visualizer.core.atlas.sources import image_paths
from visualizer.core.atlas.store import (
    FORMAT,
    PARTIAL_FILE,
    IndexFileError,
    Partial,
    load_partial,
    save_partial,
    write_index,
)
from visualizer.core.atlas.topk import ChannelTopK
from visualizer.networks import NetworkSpec

BACKENDS = ("local", "ray")
SCORE = "the channel's spatial maximum activation"


@dataclass(frozen=True)
class IndexReport:
    """What a finished ``build_index`` did.

    Attributes:
        folder: where the index is.
        images: images indexed.
        refused: ``(source, reason)`` of each file that is not a readable image.
        seconds: wall time of this run (after loading the network), in seconds.
        resumed_from: images already done by an interrupted run (0 for a fresh one).
    """

    folder: Path
    images: int
    refused: list[tuple[str, str]]
    seconds: float
    resumed_from: int


Progress = Callable[[int, int], None]  # (images done, images in all)
Refusal = Callable[[str, str], None]  # (source, reason), as each refusal is found


def batch_numbers(images: int, batch_size: int) -> list[range]:
    """The image numbers of each batch: ``range(b * batch_size, …)``."""
    return [range(start, min(start + batch_size, images)) for start in range(0, images, batch_size)]


def build_index(
    sources: Sequence[str | os.PathLike[str]],
    out: str | os.PathLike[str],
    analyzer: Analyzer,
    *,
    layers: Sequence[str] = STAGE_NAMES,
    top: int = 9,
    batch_size: int = 32,
    workers: int = 2,
    backend: str = "local",
    address: str | None = None,
    resume: bool = False,
    save_every: float = 30.0,
    progress: Progress | None = None,
    refusal: Refusal | None = None,
    device: str | None = None,
) -> IndexReport:
    """Index the images ``sources`` name (see ``sources.image_paths``) into the folder ``out``.

    Args:
        analyzer: the network, its device and preprocessing. Ray workers build the same
            network (architecture, weights file, preprocessing) and check that their weights
            have the same SHA-256.
        layers: stages ``C1``–``C5`` or feature layers' names.
        top: images kept per channel (K).
        batch_size: images per forward pass.
        workers: processes reading images (0: this one); for Ray, reading tasks at a time.
        backend: ``"local"`` or ``"ray"`` (Ray Data; ``address`` of a cluster to join, else a
            local instance).
        resume: continue an interrupted run saved in ``out`` (same settings and images).
        save_every: seconds between saves of the progress (0: after every batch).
        progress: called with (images done, images in all) after each batch.
        refusal: called with (source, reason) for each file that is not a readable image.
        device: where Ray workers run the network: ``"cuda"`` (one actor per GPU),
            ``"cpu"``, or ``"auto"`` (GPUs when the cluster has them); None: the analyzer's.

    Raises:
        SourceError: a source that gives no images.
        ValueError: a layer that is neither a stage nor a feature layer; ``top`` or
            ``batch_size`` below 1; an unknown backend.
        IndexFileError: ``resume`` with progress saved under other settings, or progress
            saved in ``out`` without ``resume`` (it is not thrown away unasked).
        RayMissingError: the Ray backend without Ray installed.
        ConnectionError: no Ray cluster at ``address``.
        OSError: ``out`` cannot be written.
    """
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}: choose {' or '.join(BACKENDS)}")
    if top < 1 or batch_size < 1:
        raise ValueError("--top and --batch-size must be at least 1")
    paths = image_paths(sources)
    layers = list(dict.fromkeys(layers))
    modules = layer_modules(analyzer, layers)
    shapes = layer_shapes(analyzer, layers)
    crop = analyzer.preprocessing.crop
    fields = receptive_fields(analyzer.model, list(modules.values()), crop, crop)
    fields = {layer: fields[modules[layer]] for layer in layers}
    folder = Path(out)
    identity = network_identity(analyzer)
    fingerprint = {
        # The weights by their SHA-256 (or the seed, in "weights"), not by where the file is.
        "network": {key: value for key, value in identity.items() if key != "weights_file"},
        "preprocessing": preprocessing_identity(analyzer.preprocessing),
        "layers": layers,
        "top": top,
        "batch_size": batch_size,
        "images": _digest(paths),
    }
    if not resume and (folder / PARTIAL_FILE).exists():
        raise IndexFileError(
            f"{folder / PARTIAL_FILE}: an interrupted run's progress is saved here: add "
            "--resume to continue it, or delete the file to start again"
        )
    partial = load_partial(folder, fingerprint) if resume else None
    if partial is None:
        partial = Partial(
            summaries={layer: ChannelTopK.empty(shapes[layer][0], top) for layer in layers},
            batches_done=frozenset(),
            refused=[],
        )
    if backend == "local":  # merged where the batches are summarised: on the device
        on_device = {
            layer: summary.to(analyzer.device) for layer, summary in partial.summaries.items()
        }
        partial = dataclasses.replace(partial, summaries=on_device)
    all_batches = batch_numbers(len(paths), batch_size)
    remaining = [b for b in range(len(all_batches)) if b not in partial.batches_done]
    resumed_from = sum(len(all_batches[b]) for b in partial.batches_done)
    started = time.perf_counter()
    todo = {b: all_batches[b] for b in remaining}
    if backend == "local":
        results = _local(paths, analyzer, layers=layers, top=top, todo=todo, workers=workers)
    else:
        from visualizer.core.atlas.ray_backend import ray_batches  # noqa: PLC0415 - optional

        results = ray_batches(
            paths,
            network=_spec_of(analyzer),
            weights_sha256=fingerprint["network"]["weights_sha256"],
            preprocessing=analyzer.preprocessing,
            device=device or analyzer.device.type,
            shapes=shapes,
            top=top,
            batches=todo,
            workers=workers,
            address=address,
        )
    made = not folder.exists()
    folder.mkdir(parents=True, exist_ok=True)
    try:
        with contextlib.closing(results):  # the readers (and a Ray instance) go at the end
            state = _merged_results(
                results,
                partial,
                sizes=[len(numbers) for numbers in all_batches],
                save=lambda state: save_partial(folder, state, fingerprint),
                save_every=save_every,
                progress=progress,
                refusal=None if refusal is None else lambda n, reason: refusal(paths[n], reason),
            )
    except Exception:
        if made and not any(folder.iterdir()):  # nothing done: no empty folder left behind
            folder.rmdir()
        raise
    seconds = time.perf_counter() - started
    refused = sorted(state.refused)
    counted = len(paths) - len(refused)
    layer_metadata = {
        layer: {
            "module": modules[layer],
            "shape": list(shapes[layer]),
            "receptive_field": dataclasses.asdict(fields[layer]),
        }
        for layer in layers
    }
    metadata = {
        "format": FORMAT,
        **fingerprint,
        "network": identity,
        "layers": layer_metadata,
        "score": SCORE,
        "images": {
            "sources": len(paths),
            "counted": counted,
            "refused": [{"source": paths[n], "reason": reason} for n, reason in refused],
            "digest": fingerprint["images"],
        },
        "fmviz": _version(),
        "torch": torch.__version__,
        "python": platform.python_version(),
    }
    write_index(
        folder,
        summaries=state.summaries,
        paths=paths,
        fields=fields,
        resized_size=analyzer.preprocessing.resized_size,
        crop=crop,
        interpolation=analyzer.preprocessing.interpolation,
        metadata=metadata,
    )
    return IndexReport(
        folder=folder,
        images=counted,
        refused=[(paths[number], reason) for number, reason in refused],
        seconds=seconds,
        resumed_from=resumed_from,
    )


def _merged_results(
    results: Iterable[tuple[int, dict[str, ChannelTopK], list[tuple[int, str]]]],
    state: Partial,
    *,
    sizes: Sequence[int],
    save: Callable[[Partial], None],
    save_every: float,
    progress: Progress | None,
    refusal: Callable[[int, str], None] | None,
) -> Partial:
    """``state`` with every batch of ``results`` merged in; saved every ``save_every`` seconds
    and when anything interrupts it (Ctrl+C's ``KeyboardInterrupt`` or a failure, which goes
    on)."""
    total = sum(sizes)
    done = sum(sizes[number] for number in state.batches_done)
    if progress is not None:
        progress(done, total)
    last_save = time.monotonic()
    try:
        for number, batch_summaries, batch_refused in results:
            merged = {
                layer: summary.merged(batch_summaries[layer])
                if layer in batch_summaries
                else summary
                for layer, summary in state.summaries.items()
            }
            # One assignment: an interruption leaves the state with or without the batch.
            state = Partial(merged, state.batches_done | {number}, state.refused + batch_refused)
            for image, reason in batch_refused:
                if refusal is not None:
                    refusal(image, reason)
            done += sizes[number]
            if progress is not None:
                progress(done, total)
            if time.monotonic() - last_save >= save_every and done < total:
                save(state)
                last_save = time.monotonic()
    except BaseException:  # Ctrl+C, a device out of memory, a failed worker: keep what is done
        if state.batches_done:
            save(state)
        raise
    return state


def _local(
    paths: Sequence[str],
    analyzer: Analyzer,
    *,
    layers: Sequence[str],
    top: int,
    todo: Mapping[int, range],
    workers: int,
) -> Iterator[tuple[int, dict[str, ChannelTopK], list[tuple[int, str]]]]:
    reducer = LayerReducer(analyzer, layers, top)
    loader = batches(
        paths,
        analyzer.preprocessing,
        batch_sampler=[list(numbers) for numbers in todo.values()],
        workers=workers,
        pin_memory=analyzer.device.type == "cuda",
    )
    for number, batch in zip(todo, loader, strict=True):
        yield number, reducer(batch), batch.refused


def _spec_of(analyzer: Analyzer) -> NetworkSpec:
    """The spec that builds ``analyzer``'s network again (on a Ray worker)."""
    info = analyzer.weights_info
    named = {"imagenet": "imagenet", "random": "random"}
    weights = "random" if info is None else named.get(info.kind, os.path.abspath(info.detail))
    p = analyzer.preprocessing
    return NetworkSpec(
        model=analyzer.arch,
        weights=weights,
        mean=p.mean,
        std=p.std,
        resize=p.resize,
        crop=p.crop,
    )


def _digest(paths: Sequence[str]) -> str:
    return hashlib.sha256("\n".join(paths).encode()).hexdigest()


def _version() -> str:
    from visualizer import __version__  # noqa: PLC0415 - visualizer imports the core

    return __version__
