"""A network in six rows: stages C1–C5 and the head, each with its output shape, its time and
its parameters. What the comparison of two architectures is made of."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from torch import nn

from models import STAGE_NAMES, stage_module_names
from visualizer.choices import GROUPS, HEAD
from visualizer.core.analysis import AnalysisResult


@dataclass(frozen=True)
class StageRow:
    """One stage (or the head) of one analysis."""

    stage: str  # "C1" … "C5" or "head"
    shape: tuple[int, ...]  # output without the batch: (C, H, W), or (classes,) for the head
    ms: float  # the time of its layers
    parameters: int  # the parameters of its layers


def layer_stages(names: Sequence[str], stage_modules: dict[str, str]) -> list[str]:
    """The stage each layer (in execution order) belongs to: up to and including the last
    layer inside a stage's module; layers after C5 are the ``head``."""
    last: dict[str, int] = {}
    for index, name in enumerate(names):
        for stage, module in stage_modules.items():
            if name == module or name.startswith(module + "."):
                last[stage] = index
    ends = [(last[stage], stage) for stage in STAGE_NAMES if stage in last]
    stages, position = [], 0
    for index in range(len(names)):
        while position < len(ends) and index > ends[position][0]:
            position += 1
        stages.append(ends[position][1] if position < len(ends) else HEAD)
    return stages


def stage_parameters(model: nn.Module) -> dict[str, int]:
    """The number of parameters in each stage and in the head."""
    # Every leaf counts as a layer (a stage may end on a ReLU, which has no parameters).
    owners = [
        (name, sum(p.numel() for p in module.parameters(recurse=False)))
        for name, module in model.named_modules()
        if next(module.children(), None) is None or next(module.parameters(False), None) is not None
    ]
    counts = dict.fromkeys(GROUPS, 0)
    stages = layer_stages([name for name, _ in owners], stage_module_names(model))
    for (_, count), stage in zip(owners, stages, strict=True):
        counts[stage] += count
    return counts


def stage_rows(
    model: nn.Module, result: AnalysisResult, parameters: dict[str, int] | None = None
) -> tuple[StageRow, ...]:
    """Shape, time and parameters of C1–C5 and the head of ``result`` (made by ``model``).

    ``parameters``: ``stage_parameters(model)``, when already counted. Times are zero when
    the analysis ran with per-layer timing off.
    """
    names = [name for name, _, _ in result.timings]
    milliseconds = dict.fromkeys(GROUPS, 0.0)
    for (_, _, ms), stage in zip(
        result.timings, layer_stages(names, stage_module_names(model)), strict=True
    ):
        milliseconds[stage] += ms
    parameters = parameters or stage_parameters(model)
    shapes = {stage: tuple(result.stages[stage].shape) for stage in STAGE_NAMES}
    shapes[HEAD] = tuple(result.logits.shape)
    return tuple(StageRow(g, shapes[g], milliseconds[g], parameters[g]) for g in GROUPS)
