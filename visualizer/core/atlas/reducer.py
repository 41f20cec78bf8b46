"""A network on its device turning batches of images into each layer's per-channel top-K."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from models.stages import stage_module_names
from visualizer.core.analysis import Analyzer
from visualizer.core.atlas.dataset import Batch
from visualizer.core.atlas.topk import ChannelTopK, summarize


class _Enough(Exception):  # noqa: N818 - a signal, not an error
    """Raised by the last layer's hook: the rest of the network is not needed."""


def layer_modules(analyzer: Analyzer, layers: Sequence[str]) -> dict[str, str]:
    """The qualified module name of each of ``layers`` (stages ``C1``–``C5`` or feature
    layers' names), by the name given.

    Raises:
        ValueError: a name that is neither a stage nor a feature layer.
    """
    stages = stage_module_names(analyzer.model)
    modules = {}
    for layer in layers:
        if layer in stages:
            modules[layer] = stages[layer]
        else:
            analyzer._module(layer)  # refuses an unknown name with examples
            modules[layer] = layer
    return modules


class LayerReducer:
    """``reducer(batch)`` → ``{layer: ChannelTopK}`` for one batch, on the network's device
    (nothing waits for it), the network stopping after the last layer asked for (the
    classifier is not run).

    Args:
        analyzer: the network, its device and its preprocessing.
        layers: the layers' names (stages or feature layers), by the names to report.
        k: images kept per channel.
    """

    def __init__(self, analyzer: Analyzer, layers: Sequence[str], k: int) -> None:
        self.analyzer = analyzer
        self.modules = layer_modules(analyzer, layers)
        self.k = k

    def __call__(self, batch: Batch) -> dict[str, ChannelTopK]:
        if batch.numbers.numel() == 0:
            return {}
        model = self.analyzer.model
        device = self.analyzer.device
        pixels = self.analyzer.preprocessing.normalized(batch.pixels.to(device, non_blocking=True))
        numbers = batch.numbers.to(device, non_blocking=True)
        sizes = batch.sizes.to(device, non_blocking=True)
        summaries: dict[str, ChannelTopK] = {}

        def reduce(layer: str, output: torch.Tensor) -> None:
            # Summarised as the output is made: a later in-place ReLU would change it, and the
            # batch's maps are not kept.
            summaries[layer] = summarize(output, numbers, sizes, self.k)
            if len(summaries) == len(self.modules):
                raise _Enough

        handles = [
            model.get_submodule(name).register_forward_hook(
                lambda _m, _i, output, layer=layer: reduce(layer, output)
            )
            for layer, name in self.modules.items()
        ]
        try:
            with torch.inference_mode():
                model(pixels)
        except _Enough:
            pass
        finally:
            for handle in handles:
                handle.remove()
        return summaries


def layer_shapes(analyzer: Analyzer, layers: Sequence[str]) -> dict[str, tuple[int, int, int]]:
    """``(C, H, W)`` of each layer's output for the network's input size."""
    modules = layer_modules(analyzer, layers)
    shapes = {layer.name: layer.shape for layer in analyzer.feature_layers()}
    stages = {name: stage for stage, name in stage_module_names(analyzer.model).items()}
    result = {}
    for layer, name in modules.items():
        if name in shapes:
            result[layer] = shapes[name]
        else:  # a stage whose module is called more than once is no feature layer
            raise ValueError(f"{layer} ({stages.get(name, name)}) gives no single feature map")
    return result
