"""The index on a Ray cluster, with Ray Data (the optional extra ``fmviz[ray]``).

Batches of paths (the same batches as the local backend, so the index is the same) go to CPU
tasks that read and preprocess them with fmviz's own ``load_image`` and transform; an actor
pool holds the network, one actor per GPU (or one per machine without GPUs), and turns each
batch into its per-channel top-K and sums; the driver merges those as they come
(``ChannelTopK.merged`` is associative, so their order does not matter).
"""

from __future__ import annotations

import json
import logging
import platform
from collections.abc import Iterator, Mapping, Sequence

import numpy as np
import torch

from visualizer.core.atlas.dataset import Batch, ImageFiles, collate
from visualizer.core.atlas.topk import ChannelTopK
from visualizer.core.preprocess import Preprocessing
from visualizer.networks import NetworkSpec

MISSING = "the Ray backend needs Ray: pip install 'fmviz[ray]'"
SEPARATOR = "/"  # between a layer's name and a summary field's, in the columns' names


class RayMissingError(RuntimeError):
    """Ray is not installed."""


class RayClusterError(RuntimeError):
    """The Ray cluster cannot run the index as asked (e.g. ``--device cuda`` without GPUs)."""


def ray_batches(
    paths: Sequence[str],
    *,
    network: NetworkSpec,
    weights_sha256: str | None,
    preprocessing: Preprocessing,
    device: str,
    shapes: Mapping[str, tuple[int, int, int]],
    top: int,
    batches: Mapping[int, range],
    workers: int,
    address: str | None,
) -> Iterator[tuple[int, dict[str, ChannelTopK], list[tuple[int, str]]]]:
    """Each batch's ``(number, summaries by layer, refusals)``, as the cluster finishes them.

    Joins the cluster at ``address`` (``"auto"``: the one this machine belongs to), or uses
    the Ray instance this process has already started, else starts a local one (and stops it
    at the end). ``device``: ``"cuda"`` or ``"auto"`` put one actor on each of the cluster's
    GPUs (``"auto"``: the CPUs when it has none); ``"cpu"`` one actor per machine. Each actor
    builds ``network`` and checks that its weights' SHA-256 is ``weights_sha256``.

    Raises:
        RayMissingError: Ray is not installed.
        ConnectionError: no Ray cluster at ``address``.
    """
    try:
        import ray  # noqa: PLC0415 - optional
    except ImportError:
        raise RayMissingError(MISSING) from None
    if not batches:
        return
    started = not ray.is_initialized()
    if started:
        ray.init(address=address, include_dashboard=False, logging_level=logging.ERROR)
    try:
        context = ray.data.DataContext.get_current()
        logging.getLogger("ray.data").setLevel(logging.ERROR)  # not lines per run of a dataset
        context.enable_progress_bars = False
        context.print_on_execution_start = False
        resources = ray.cluster_resources()
        gpus = int(resources.get("GPU", 0)) if device in {"cuda", "auto"} else 0
        if device == "cuda" and not gpus:
            raise RayClusterError("--device cuda: the Ray cluster has no GPU")
        machines = sum(1 for node in ray.nodes() if node.get("Alive"))
        items = [
            {"batch": number, "paths": [paths[n] for n in numbers], "first": numbers.start}
            for number, numbers in batches.items()
        ]
        size = max(len(numbers) for numbers in batches.values())
        dataset = ray.data.from_items(items, override_num_blocks=len(items))
        dataset = dataset.map_batches(
            _read,
            batch_size=1,
            fn_kwargs={"preprocessing": preprocessing, "size": size},
            num_cpus=1,
            compute=ray.data.TaskPoolStrategy(size=max(1, workers)),
        )
        dataset = dataset.map_batches(
            _Reducer,
            batch_size=1,
            fn_constructor_kwargs={
                "network": network,
                "weights_sha256": weights_sha256,
                "device": "cuda" if gpus else "cpu",
                "shapes": dict(shapes),
                "top": top,
                "threads": torch.get_num_threads(),
            },
            num_gpus=1 if gpus else 0,
            num_cpus=1,
            compute=ray.data.ActorPoolStrategy(size=max(1, gpus or machines)),
        )
        for row in dataset.iter_rows():
            yield _decoded(row, shapes)
    finally:
        if started:
            ray.shutdown()


def _read(rows: dict[str, np.ndarray], preprocessing: Preprocessing, size: int) -> dict:
    """One batch of paths → its images, preprocessed, padded to ``size`` (a Ray task)."""
    paths = list(rows["paths"][0])
    first = int(rows["first"][0])
    files = ImageFiles(paths, preprocessing)
    batch = collate([files[index] for index in range(len(paths))])
    count = len(batch.numbers)
    pixels = np.zeros((1, size, *_input_shape(preprocessing)), np.uint8)
    numbers = np.full((1, size), -1, np.int64)
    sizes = np.zeros((1, size, 2), np.int64)
    if count:
        pixels[0, :count] = batch.pixels.numpy()
        numbers[0, :count] = batch.numbers.numpy() + first
        sizes[0, :count] = batch.sizes.numpy()
    refused = [(number + first, reason) for number, reason in batch.refused]
    return {
        "batch": rows["batch"],
        "pixels": pixels,
        "numbers": numbers,
        "sizes": sizes,
        "refused": np.array([json.dumps(refused)]),
    }


def _input_shape(preprocessing: Preprocessing) -> tuple[int, int, int]:
    return (preprocessing.channels, preprocessing.crop, preprocessing.crop)


class _Reducer:
    """Ray Data's callable class: the network on this actor's device, a batch at a time."""

    def __init__(
        self,
        *,
        network: NetworkSpec,
        weights_sha256: str | None,
        device: str,
        shapes: dict[str, tuple[int, int, int]],
        top: int,
        threads: int,
    ) -> None:
        from visualizer.core.analysis import Analyzer  # noqa: PLC0415 - in the actor
        from visualizer.core.atlas.identity import network_identity  # noqa: PLC0415
        from visualizer.core.atlas.reducer import LayerReducer  # noqa: PLC0415

        if device == "cpu":
            torch.set_num_threads(threads)
        analyzer = Analyzer(
            network.model,
            network.weights,
            device,
            timings=False,
            warm_up=False,
            progress=False,
            **network.analyzer_options(),
        )
        theirs = network_identity(analyzer)["weights_sha256"]
        if theirs != weights_sha256:
            raise ValueError(
                f"the weights on {platform.node()} ({network.weights}) are not the driver's: "
                f"SHA-256 {theirs} instead of {weights_sha256}"
            )
        self.reducer = LayerReducer(analyzer, list(shapes), top)
        self.shapes = shapes
        self.top = top

    def __call__(self, rows: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        valid = rows["numbers"][0] >= 0
        batch = Batch(
            numbers=torch.from_numpy(rows["numbers"][0][valid].copy()),
            pixels=torch.from_numpy(rows["pixels"][0][valid].copy()),
            sizes=torch.from_numpy(rows["sizes"][0][valid].copy()),
            refused=[],
        )
        summaries = self.reducer(batch)
        out: dict[str, np.ndarray] = {"batch": rows["batch"], "refused": rows["refused"]}
        for layer, (channels, _h, _w) in self.shapes.items():
            summary = summaries.get(layer) or ChannelTopK.empty(channels, self.top)
            for name, values in summary.as_arrays().items():
                out[f"{layer}{SEPARATOR}{name}"] = values[np.newaxis]
        return out


def _decoded(
    row: Mapping[str, object], shapes: Mapping[str, tuple[int, int, int]]
) -> tuple[int, dict[str, ChannelTopK], list[tuple[int, str]]]:
    summaries = {}
    for layer in shapes:
        prefix = f"{layer}{SEPARATOR}"
        arrays = {
            key[len(prefix) :]: np.asarray(value)
            for key, value in row.items()
            if key.startswith(prefix)
        }
        summaries[layer] = ChannelTopK.from_arrays(arrays)
    refused = [(int(number), str(reason)) for number, reason in json.loads(str(row["refused"]))]
    return int(row["batch"]), summaries, refused  # type: ignore[call-overload]
