"""Stage rows (shape, time, parameters of C1–C5 and the head) against torchvision's own layout.

The references are computed here from torchvision's ``vgg16``/``resnet101`` modules (which
layers make up which stage), not from the grouping under test; the totals are also checked
against the published parameter counts of the two networks.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import pytest
import torch
from PIL import Image
from torch import nn

from models import STAGE_NAMES, stage_module_names
from models.stages import stage_map
from visualizer.core.analysis import AnalysisResult
from visualizer.core.stage_summary import (
    GROUPS,
    HEAD,
    StageRow,
    layer_stages,
    stage_parameters,
    stage_rows,
)

# Published figures (torchvision's model docs): parameters of the whole network.
TOTAL_PARAMETERS = {"vgg16": 138_357_544, "resnet101": 44_549_160}
# Stage outputs (C, H, W) for a 224 × 224 input: the standard tables of both papers.
STAGE_SHAPES = {
    "vgg16": {
        "C1": (64, 224, 224),
        "C2": (128, 112, 112),
        "C3": (256, 56, 56),
        "C4": (512, 28, 28),
        "C5": (512, 14, 14),
    },
    "resnet101": {
        "C1": (64, 56, 56),
        "C2": (256, 56, 56),
        "C3": (512, 28, 28),
        "C4": (1024, 14, 14),
        "C5": (2048, 7, 7),
    },
}


def count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.fixture(scope="module")
def analysed(analyzer_of, make_image: Callable[..., Image.Image]):
    """``arch`` → its analysis of one small picture (timings on)."""
    picture = make_image(80, 64, seed=11)
    results: dict[str, AnalysisResult] = {}

    def get(arch: str) -> AnalysisResult:
        if arch not in results:
            results[arch] = analyzer_of(arch).analyze(picture, source="pic.png")
        return results[arch]

    return get


@pytest.fixture(scope="module")
def torchvision_net():
    """``arch`` → torchvision's own network (random weights: only its layout is used)."""
    import torchvision

    built: dict[str, nn.Module] = {}

    def get(arch: str) -> nn.Module:
        if arch not in built:
            built[arch] = getattr(torchvision.models, arch)(weights=None)
        return built[arch]

    return get


def reference_group(arch: str, reference: nn.Module) -> Callable[[str], str]:
    """A layer name → its stage, read off torchvision's layout of ``arch``.

    VGG16: a stage is a block of convolutions up to the ReLU before each max pooling; a pooling
    starts the next stage, and the last pooling, ``avgpool`` and ``classifier`` are the head.
    ResNet101: C1 is the stem (conv1, bn1, relu, maxpool), C2–C5 are layer1–layer4, the head is
    avgpool and fc.
    """
    if arch == "vgg16":
        pools = [i for i, m in enumerate(reference.features) if isinstance(m, nn.MaxPool2d)]
        assert len(pools) == 5

        def vgg(name: str) -> str:
            top, _, rest = name.partition(".")
            if top != "features":
                assert top in ("avgpool", "classifier"), name
                return HEAD
            index = int(rest.split(".")[0])
            for stage, pool in zip(STAGE_NAMES, pools, strict=True):
                if index < pool:
                    return stage
            return HEAD

        return vgg

    def resnet(name: str) -> str:
        top = name.partition(".")[0]
        if top in ("conv1", "bn1", "relu", "maxpool"):
            return "C1"
        if top.startswith("layer"):
            return STAGE_NAMES[int(top.removeprefix("layer"))]
        assert top in ("avgpool", "fc"), name
        return HEAD

    return resnet


def reference_parameters(arch: str, reference: nn.Module) -> dict[str, int]:
    """Parameters of each stage and the head, from torchvision's modules."""
    if arch == "vgg16":
        counts = dict.fromkeys(GROUPS, 0)
        group = reference_group(arch, reference)
        for index, module in enumerate(reference.features):
            counts[group(f"features.{index}")] += count(module)
        counts[HEAD] += count(reference.avgpool) + count(reference.classifier)
        return counts
    return {
        "C1": count(reference.conv1) + count(reference.bn1),
        "C2": count(reference.layer1),
        "C3": count(reference.layer2),
        "C4": count(reference.layer3),
        "C5": count(reference.layer4),
        HEAD: count(reference.fc),
    }


# --- stage_parameters ------------------------------------------------------------------------


def test_groups_are_the_five_stages_then_the_head() -> None:
    assert HEAD == "head"
    assert GROUPS == ("C1", "C2", "C3", "C4", "C5", "head")


def test_parameters_add_up_to_the_whole_network(arch: str, analyzer_of, torchvision_net) -> None:
    model = analyzer_of(arch).model
    counts = stage_parameters(model)
    assert list(counts) == list(GROUPS)
    assert sum(counts.values()) == sum(p.numel() for p in model.parameters())
    assert sum(counts.values()) == count(torchvision_net(arch)) == TOTAL_PARAMETERS[arch]


def test_parameters_of_each_stage_are_torchvisions(arch: str, analyzer_of, torchvision_net) -> None:
    expected = reference_parameters(arch, torchvision_net(arch))
    assert sum(expected.values()) == TOTAL_PARAMETERS[arch]
    assert stage_parameters(analyzer_of(arch).model) == expected


@pytest.mark.parametrize(
    ("arch", "group", "parameters"),
    [
        # classifier: 25088·4096 + 4096 + 4096·4096 + 4096 + 4096·1000 + 1000
        ("vgg16", "head", 123_642_856),
        # two 3×3 convolutions, 3→64 and 64→64, with biases: 1792 + 36928
        ("vgg16", "C1", 38_720),
        # conv1 7×7, 3→64, no bias (9408) + bn1 (128)
        ("resnet101", "C1", 9_536),
        # fc: 2048·1000 + 1000
        ("resnet101", "head", 2_049_000),
    ],
)
def test_known_parameter_counts(analyzer_of, arch: str, group: str, parameters: int) -> None:
    assert stage_parameters(analyzer_of(arch).model)[group] == parameters


class Block(nn.Module):
    """A module with a parameter of its own and a child with more."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.ones(5))
        self.inner = nn.Linear(2, 3)  # 6 + 3


class Toy(nn.Module):
    """Five stages, one ending on a parameter-free ReLU, and a head."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 2, 1)  # 6 + 2
        self.block = Block()  # 5 + 9
        self.act = nn.ReLU()  # 0
        self.mid = nn.Sequential(nn.Linear(3, 3))  # 9 + 3
        self.norm = nn.BatchNorm1d(3)  # 3 + 3 (running stats are buffers)
        self.fc = nn.Linear(3, 2)  # 6 + 2

    @property
    def stages(self):
        return stage_map([self.stem, self.block, self.act, self.mid, self.norm])


def test_parameters_of_a_module_with_its_own_and_its_childrens() -> None:
    counts = stage_parameters(Toy())
    assert counts == {"C1": 8, "C2": 14, "C3": 0, "C4": 12, "C5": 6, "head": 8}


# --- stage_rows ------------------------------------------------------------------------------


def test_rows_are_the_groups_in_order(arch: str, analyzer_of, analysed) -> None:
    rows = stage_rows(analyzer_of(arch).model, analysed(arch))
    assert all(isinstance(row, StageRow) for row in rows)
    assert [row.stage for row in rows] == list(GROUPS)


def test_row_shapes_are_the_stage_outputs_and_the_logits(arch: str, analyzer_of, analysed) -> None:
    result = analysed(arch)
    rows = {row.stage: row for row in stage_rows(analyzer_of(arch).model, result)}
    for stage in STAGE_NAMES:
        assert rows[stage].shape == tuple(result.stages[stage].shape)
        assert rows[stage].shape == STAGE_SHAPES[arch][stage]
    assert rows[HEAD].shape == (1000,)


def test_row_parameters_are_torchvisions(arch: str, analyzer_of, analysed, torchvision_net) -> None:
    rows = stage_rows(analyzer_of(arch).model, analysed(arch))
    expected = reference_parameters(arch, torchvision_net(arch))
    assert {row.stage: row.parameters for row in rows} == expected


def test_row_times_add_up_to_the_layer_times(arch: str, analyzer_of, analysed) -> None:
    result = analysed(arch)
    assert len(result.timings) > 30
    rows = stage_rows(analyzer_of(arch).model, result)
    total = sum(ms for _, _, ms in result.timings)
    assert total > 0
    assert sum(row.ms for row in rows) == pytest.approx(total, rel=1e-9)
    assert all(row.ms >= 0 for row in rows)


def test_each_layer_time_lands_in_its_stage(
    arch: str, analyzer_of, analysed, torchvision_net
) -> None:
    result = analysed(arch)
    group = reference_group(arch, torchvision_net(arch))
    expected = dict.fromkeys(GROUPS, 0.0)
    for name, _, ms in result.timings:
        expected[group(name)] += ms
    rows = stage_rows(analyzer_of(arch).model, result)
    for row in rows:
        assert row.ms == pytest.approx(expected[row.stage], rel=1e-9, abs=1e-12), row.stage


def test_each_layer_time_lands_in_its_stage_with_distinct_times(
    arch: str, analyzer_of, analysed, torchvision_net
) -> None:
    # Each layer a different whole number of milliseconds: sums stay exact, so a misplaced
    # layer shows as an inequality, not a rounding.
    result = analysed(arch)
    timings = [
        (name, kind, float(index + 1)) for index, (name, kind, _) in enumerate(result.timings)
    ]
    group = reference_group(arch, torchvision_net(arch))
    expected = dict.fromkeys(GROUPS, 0.0)
    for name, _, ms in timings:
        expected[group(name)] += ms
    assert all(expected[g] > 0 for g in GROUPS)  # every group has layers
    rows = stage_rows(analyzer_of(arch).model, dataclasses.replace(result, timings=timings))
    assert {row.stage: row.ms for row in rows} == expected


def test_without_timings_the_times_are_zero(arch: str, analyzer_of, analysed) -> None:
    result = dataclasses.replace(analysed(arch), timings=[])
    rows = stage_rows(analyzer_of(arch).model, result)
    assert [row.ms for row in rows] == [0.0] * len(GROUPS)
    assert [row.shape for row in rows[:-1]] == [STAGE_SHAPES[arch][s] for s in STAGE_NAMES]
    assert sum(row.parameters for row in rows) == TOTAL_PARAMETERS[arch]


def test_stage_of_every_layer_of_the_real_networks(
    arch: str, analyzer_of, analysed, torchvision_net
) -> None:
    names = [name for name, _, _ in analysed(arch).timings]
    group = reference_group(arch, torchvision_net(arch))
    stages = layer_stages(names, stage_module_names(analyzer_of(arch).model))
    assert stages == [group(name) for name in names]


# --- layer_stages edge cases -----------------------------------------------------------------


def test_no_layers() -> None:
    assert layer_stages([], {"C1": "a"}) == []


def test_without_stage_modules_every_layer_is_the_head() -> None:
    assert layer_stages(["a", "b.0"], {}) == [HEAD, HEAD]


def test_a_leaf_stage_module_is_matched_by_its_whole_name() -> None:
    # features.30 and features.31 are not inside features.3.
    names = ["features.0", "features.3", "features.30", "features.31"]
    assert layer_stages(names, {"C1": "features.3"}) == ["C1", "C1", HEAD, HEAD]


def test_a_stage_module_is_not_a_prefix_of_another_name() -> None:
    names = ["layer1.0.conv", "layer1.1.conv", "layer10.0.conv", "fc"]
    assert layer_stages(names, {"C1": "layer1", "C2": "layer10"}) == ["C1", "C1", "C2", HEAD]


def test_layers_before_a_stage_end_belong_to_that_stage() -> None:
    # A pooling after C1 belongs to C2 (it feeds C2); layers before anything named, to C1.
    names = ["conv", "relu", "pool1", "block2.conv", "block2.relu", "pool2", "fc"]
    modules = {"C1": "relu", "C2": "block2"}
    assert layer_stages(names, modules) == ["C1", "C1", "C2", "C2", "C2", HEAD, HEAD]


def test_the_order_of_the_stage_mapping_does_not_matter() -> None:
    names = [f"s{i}.layer" for i in range(1, 6)] + ["head.fc"]
    forward = {stage: f"s{i}" for i, stage in enumerate(STAGE_NAMES, start=1)}
    backward = dict(reversed(list(forward.items())))
    expected = [*STAGE_NAMES, HEAD]
    assert layer_stages(names, forward) == expected
    assert layer_stages(names, backward) == expected


def test_a_stage_without_layers_leaves_its_span_to_the_next() -> None:
    # C2's module ran no timed layer: what lies between C1 and C3 is C3's.
    names = ["a.0", "b.0", "c.0", "d.0", "e.0", "f.0"]
    modules = {"C1": "a", "C2": "missing", "C3": "c", "C4": "d", "C5": "e"}
    assert layer_stages(names, modules) == ["C1", "C3", "C3", "C4", "C5", HEAD]


def test_every_layer_of_a_stage_module_counts_up_to_its_last() -> None:
    # The shortcut runs first in a residual block, so layer names are not in definition order.
    names = ["stem", "layer1.0.downsample.0", "layer1.0.conv1", "layer1.0.relu3", "fc"]
    modules = {"C1": "stem", "C2": "layer1"}
    assert layer_stages(names, modules) == ["C1", "C2", "C2", "C2", HEAD]
