"""How faithful an attribution map is: the deletion and insertion curves of Petsiuk, Das and
Saenko, "RISE: Randomized Input Sampling for Explanation of Black-box Models" (BMVC 2018).

Deletion removes the input's pixels in order of decreasing attribution, a step at a time, and
follows the target class's probability: a faithful map makes it fall fast (a low area under
the curve). Insertion restores them, in the same order, into an input with every pixel
removed: a faithful map makes it rise fast (a high area). A removed pixel takes the
``baseline`` value (0 in the normalised input: the dataset's mean colour) in every channel.
The areas are the trapezoidal rule over the fraction of pixels changed, from 0 to 1.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

DEFAULT_STEPS = 32  # points on each curve after the start: 1/32 of the pixels per step
DEFAULT_BATCH = 16  # inputs per forward pass


@dataclass(frozen=True, eq=False)
class Faithfulness:
    """The deletion and insertion curves of one map, and their areas.

    Attributes:
        fractions: ``(steps + 1,)`` the fraction of pixels removed (deletion) or restored
            (insertion) at each point, 0 to 1.
        deletion, insertion: ``(steps + 1,)`` the target's probability at each point.
        deletion_auc, insertion_auc: the areas under them, in [0, 1].
    """

    fractions: np.ndarray
    deletion: np.ndarray
    insertion: np.ndarray
    deletion_auc: float
    insertion_auc: float


def faithfulness(
    model: nn.Module,
    x: torch.Tensor,
    attribution_map: np.ndarray,
    target: int,
    *,
    steps: int = DEFAULT_STEPS,
    baseline: float = 0.0,
    batch_size: int = DEFAULT_BATCH,
    sigmoid: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> Faithfulness:
    """The deletion and insertion curves of ``attribution_map`` ``(H, W)`` for class ``target``
    on input ``x`` ``(1, C, H, W)`` (on the model's device); ``sigmoid`` for a one-output
    head. Pixels with equal attribution are taken in raster order. ``progress(done, total)``
    is called after each batch of inputs, and may stop the work by raising.

    Raises:
        ValueError: the map is not the input's size, or ``steps`` < 1.
    """
    if steps < 1 or batch_size < 1:
        raise ValueError(f"steps and batch_size must be at least 1, got {steps}, {batch_size}")
    height, width = x.shape[-2:]
    if attribution_map.shape != (height, width):
        raise ValueError(f"the map is {attribution_map.shape}, the input {(height, width)}")
    order = torch.from_numpy(
        np.argsort(-attribution_map.reshape(-1), kind="stable").astype(np.int64)
    ).to(x.device)
    counts = [round(step * height * width / steps) for step in range(steps + 1)]
    rank = torch.empty_like(order)
    rank[order] = torch.arange(order.numel(), device=x.device)
    rank = rank.reshape(1, 1, height, width)
    canvas = torch.full_like(x, baseline)
    curves = []
    total, done = 2 * -(-len(counts) // batch_size), 0
    for start, end in ((x, canvas), (canvas, x)):
        probabilities = []
        for first in range(0, len(counts), batch_size):
            chosen = torch.tensor(counts[first : first + batch_size], device=x.device)
            changed = rank < chosen.reshape(-1, 1, 1, 1)  # (B, 1, H, W): pixels changed so far
            batch = torch.where(changed, end, start)
            with torch.inference_mode():
                logits = model(batch)
            scores = torch.sigmoid(logits[:, 0]) if sigmoid else torch.softmax(logits, 1)[:, target]
            probabilities.append(scores.float().cpu())
            done += 1
            if progress is not None:
                progress(done, total)
        curves.append(torch.cat(probabilities).numpy())
    fractions = np.asarray(counts, dtype=np.float64) / (height * width)
    deletion, insertion = curves
    return Faithfulness(
        fractions=fractions,
        deletion=deletion,
        insertion=insertion,
        deletion_auc=area(fractions, deletion),
        insertion_auc=area(fractions, insertion),
    )


def area(x: np.ndarray, y: np.ndarray) -> float:
    """The area under ``y(x)`` by the trapezoidal rule (``numpy.trapezoid`` from NumPy 2)."""
    return float(np.sum((y[1:] + y[:-1]) * np.diff(x)) / 2)
