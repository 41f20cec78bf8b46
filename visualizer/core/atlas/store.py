"""An index on disk: two Parquet tables and the metadata that makes it reproducible.

``DIR/topk.parquet``: one row per (layer, channel, rank) — columns ``stage, channel, rank,
score, source, y, x, box_left, box_top, box_right, box_bottom`` (``stage`` holds the layer's
name: ``C1``–``C5`` or a module's; ``rank`` 1 is the highest score; ``y, x`` the maximum's
position in the feature map; the box in the source image's own pixels, right/bottom
exclusive, as ``PIL.Image.crop`` takes it). ``DIR/channels.parquet``: one row per (layer,
channel) — ``stage, channel, images, mean, std, active_fraction, mean_activation``.
``DIR/index.json``: the metadata (also in both tables' schema, under ``fmviz``).

A run in progress keeps ``DIR/partial.npz`` (the merged summaries so far, the batches done and
the refusals), written atomically, so that ``--resume`` continues from it; it is removed when
the index is complete. Everything is read without pickle.
"""

from __future__ import annotations

import io
import json
import math
import zipfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from visualizer.core.atlas.receptive_field import ReceptiveField, source_boxes
from visualizer.core.atlas.topk import EMPTY, ChannelTopK
from visualizer.core.export import WriteBatch, write_atomically

TOPK_FILE = "topk.parquet"
CHANNELS_FILE = "channels.parquet"
METADATA_FILE = "index.json"
PARTIAL_FILE = "partial.npz"
FORMAT = "fmviz-index/1"
TOPK_COLUMNS = (
    "stage", "channel", "rank", "score", "source", "y", "x",
    "box_left", "box_top", "box_right", "box_bottom",
)  # fmt: skip
CHANNEL_COLUMNS = (
    "stage", "channel", "images", "mean", "std", "active_fraction", "mean_activation",
)  # fmt: skip


class IndexFileError(ValueError):
    """An index folder that cannot be read; the message names it and says why."""


@dataclass(frozen=True)
class Partial:
    """A run's progress: the merged summaries, the batches done, the refusals so far."""

    summaries: dict[str, ChannelTopK]
    batches_done: frozenset[int]
    refused: list[tuple[int, str]]


def _parquet_bytes(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    return sink.getvalue().to_pybytes()


def save_partial(folder: Path, partial: Partial, fingerprint: Mapping[str, object]) -> None:
    """Save ``partial`` (atomically) with the settings it belongs to."""
    arrays: dict[str, np.ndarray] = {}
    for layer, summary in partial.summaries.items():
        for name, values in summary.as_arrays().items():
            arrays[f"{layer}\x1f{name}"] = values
    header = {
        "fingerprint": fingerprint,
        "layers": list(partial.summaries),
        "batches_done": sorted(partial.batches_done),
        "refused": partial.refused,
    }
    arrays["\x1fheader"] = np.frombuffer(json.dumps(header).encode(), dtype=np.uint8)

    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    write_atomically(folder / PARTIAL_FILE, buffer.getbuffer())


def load_partial(folder: Path, fingerprint: Mapping[str, object]) -> Partial | None:
    """The progress saved in ``folder``; None when there is none.

    Raises:
        IndexFileError: it was made with other settings (network, weights, preprocessing,
            layers, K, batch size or images), or it cannot be read.
    """
    path = folder / PARTIAL_FILE
    if not path.exists():
        return None
    try:
        # Arrays only (no pickle): nothing in the file can run. The file is opened here so
        # that it is closed when it is no zip archive too (np.load would leave it open).
        with open(path, "rb") as file, np.load(file, allow_pickle=False) as stored:
            header = json.loads(bytes(stored["\x1fheader"]).decode())
            summaries = {
                layer: ChannelTopK.from_arrays(
                    {
                        key.split("\x1f")[1]: stored[key]
                        for key in stored.files
                        if key.startswith(f"{layer}\x1f")
                    }
                )
                for layer in header["layers"]
            }
        differing = [
            key for key in fingerprint if header["fingerprint"].get(key) != _plain(fingerprint[key])
        ]
        batches_done = frozenset(int(number) for number in header["batches_done"])
        refused = [(int(number), str(reason)) for number, reason in header["refused"]]
    except (
        OSError,
        ValueError,
        KeyError,
        TypeError,
        AttributeError,
        zipfile.BadZipFile,
    ) as failure:
        reason = " ".join(str(failure).split())[:200] or type(failure).__name__
        raise IndexFileError(f"{path}: damaged, cannot resume from it ({reason})") from None
    if differing:
        raise IndexFileError(
            f"{path}: the interrupted run used other {', '.join(differing)}; "
            "run without --resume to start again"
        )
    return Partial(summaries=summaries, batches_done=batches_done, refused=refused)


def write_index(
    folder: Path,
    *,
    summaries: Mapping[str, ChannelTopK],
    paths: Sequence[str],
    fields: Mapping[str, ReceptiveField],
    resized_size: Callable[[int, int], tuple[int, int]],
    crop: int,
    interpolation: str,
    metadata: Mapping[str, object],
) -> None:
    """Write the two tables and the metadata (together, atomically), then drop the partial
    file.

    Args:
        summaries: each layer's merged summary, in the order to write.
        paths: the images' paths by number.
        fields: each layer's receptive field in the model input.
        resized_size: ``(width, height)`` → ``(height, width)`` after the resize.
        crop: the model input's side, in pixels.
        interpolation: the resize's filter, whose reach widens the boxes.
    """
    text = json.dumps(metadata, indent=1)
    schema_metadata = {b"fmviz": text.encode()}
    parts = [
        _top_rows(
            layer,
            summary.as_arrays(),
            paths,
            field=fields[layer],
            resized_size=resized_size,
            crop=crop,
            interpolation=interpolation,
        )
        for layer, summary in summaries.items()
    ]
    columns = {name: np.concatenate([part[name] for part in parts]) for name in TOPK_COLUMNS}
    statistics: dict[str, list] = {name: [] for name in CHANNEL_COLUMNS}
    for layer, summary in summaries.items():
        _statistics_rows(statistics, layer, summary.as_arrays())
    top = pa.table(
        {
            "stage": pa.array(columns["stage"], pa.string()),
            "channel": pa.array(columns["channel"], pa.int32()),
            "rank": pa.array(columns["rank"], pa.int32()),
            "score": pa.array(columns["score"], pa.float32()),
            "source": pa.array(columns["source"], pa.string()),
            **{name: pa.array(columns[name], pa.int32()) for name in TOPK_COLUMNS[5:]},
        }
    ).replace_schema_metadata(schema_metadata)
    channels = pa.table(
        {
            "stage": pa.array(statistics["stage"], pa.string()),
            "channel": pa.array(statistics["channel"], pa.int32()),
            "images": pa.array(statistics["images"], pa.int64()),
            **{name: pa.array(statistics[name], pa.float64()) for name in CHANNEL_COLUMNS[3:]},
        }
    ).replace_schema_metadata(schema_metadata)
    with WriteBatch() as batch:  # the three files appear together or not at all
        batch.write(folder / TOPK_FILE, _parquet_bytes(top))
        batch.write(folder / CHANNELS_FILE, _parquet_bytes(channels))
        batch.write(folder / METADATA_FILE, text.encode())
    (folder / PARTIAL_FILE).unlink(missing_ok=True)


def _top_rows(
    layer: str,
    summary: Mapping[str, np.ndarray],
    paths: Sequence[str],
    *,
    field: ReceptiveField,
    resized_size: Callable[[int, int], tuple[int, int]],
    crop: int,
    interpolation: str,
) -> dict[str, np.ndarray]:
    """One layer's rows of the top-K table, column by column (empty slots left out)."""
    filled = summary["images"] != EMPTY
    channels, ranks = np.nonzero(filled)  # row-major: by channel, then rank
    ys, xs = summary["ys"][filled], summary["xs"][filled]
    sizes = np.stack([summary["widths"][filled], summary["heights"][filled]], axis=-1)
    distinct, inverse = np.unique(sizes, axis=0, return_inverse=True)
    resized = np.array([resized_size(int(w), int(h)) for w, h in distinct], np.int64)
    resized = resized.reshape(-1, 2)[inverse.reshape(-1)]
    boxes = source_boxes(field.boxes(ys, xs, crop, crop), sizes, resized, crop, interpolation)
    numbers = summary["images"][filled]
    return {
        "stage": np.full(len(numbers), layer, dtype=object),
        "channel": channels,
        "rank": ranks + 1,
        "score": summary["scores"][filled],
        "source": np.array([paths[number] for number in numbers], dtype=object),
        "y": ys,
        "x": xs,
        "box_left": boxes[:, 0],
        "box_top": boxes[:, 1],
        "box_right": boxes[:, 2],
        "box_bottom": boxes[:, 3],
    }


def _statistics_rows(
    columns: dict[str, list], layer: str, summary: Mapping[str, np.ndarray]
) -> None:
    images = int(summary["count"])
    count = images or math.nan  # no image: the statistics are not numbers
    channels = len(summary["score_sum"])
    mean = summary["score_sum"] / count
    variance = np.maximum(summary["score_squares"] / count - mean**2, 0.0)
    columns["stage"] += [layer] * channels
    columns["channel"] += list(range(channels))
    columns["images"] += [images] * channels
    columns["mean"] += mean.tolist()
    columns["std"] += np.sqrt(variance).tolist()
    columns["active_fraction"] += (summary["active"] / count).tolist()
    columns["mean_activation"] += (summary["activation_sum"] / count).tolist()


def _plain(value: object) -> object:
    """``value`` as JSON gives it back (tuples become lists)."""
    return json.loads(json.dumps(value))
