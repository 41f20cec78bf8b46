"""``Analyzer.analyze`` against torchvision: stages, top-5, input, view, timings, hooks."""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from models import STAGE_NAMES, build_model, imagenet_weights
from tests.memory import settled_resident_bytes
from visualizer.core import AnalysisResult, Analyzer, ImageLoadError
from visualizer.core.timing import leaf_modules

STAGE_SHAPES = {
    "vgg16": [(64, 224, 224), (128, 112, 112), (256, 56, 56), (512, 28, 28), (512, 14, 14)],
    "resnet101": [(64, 56, 56), (256, 56, 56), (512, 28, 28), (1024, 14, 14), (2048, 7, 7)],
}
AnalyzerOf = Callable[[str], Analyzer]


@pytest.fixture(scope="module")
def analysed(analyzer_of: AnalyzerOf, make_image: Callable[..., Image.Image]):
    """Each architecture's analysis of one picture, made once."""
    picture = make_image(120, 90)
    return lambda arch: (picture, analyzer_of(arch).analyze(picture, source="ramp.png"))


def test_the_result_holds_the_five_stages_on_the_cpu(arch: str, analysed) -> None:
    _, result = analysed(arch)
    assert isinstance(result, AnalysisResult)
    assert list(result.stages) == list(STAGE_NAMES)
    for stage, shape in zip(STAGE_NAMES, STAGE_SHAPES[arch], strict=True):
        tensor = result.stages[stage]
        assert tuple(tensor.shape) == shape
        assert tensor.dtype == torch.float32
        assert tensor.device.type == "cpu"
        # Ordinary tensors: a user may modify them or start autograd from them.
        assert not tensor.is_inference()
        assert not tensor.requires_grad
    with pytest.raises(TypeError):
        result.stages["C6"] = result.stages["C1"]  # type: ignore[index]


def test_stages_and_logits_equal_torchvisions_on_the_same_input(
    arch: str, analysed, twin_of, twin_stage_module
) -> None:
    _, result = analysed(arch)
    twin = twin_of(arch)
    captured: dict[str, torch.Tensor] = {}
    handles = [
        twin_stage_module(arch, stage).register_forward_hook(
            lambda _m, _i, out, stage=stage: captured.__setitem__(stage, out.clone())
        )
        for stage in STAGE_NAMES
    ]
    try:
        with torch.inference_mode():
            logits = twin(result.input.to(next(twin.parameters()).device))
    finally:
        for handle in handles:
            handle.remove()
    for stage in STAGE_NAMES:
        expected = captured[stage][0].cpu()
        torch.testing.assert_close(result.stages[stage], expected, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(result.logits, logits[0].cpu(), rtol=1e-5, atol=1e-4)


def test_top5_are_the_softmax_leaders_with_imagenet_labels(arch: str, analysed) -> None:
    _, result = analysed(arch)
    categories = imagenet_weights(arch).meta["categories"]
    probabilities = torch.softmax(result.logits.double(), dim=0)
    expected = torch.topk(probabilities, 5)
    assert [index for index, _, _ in result.topk] == expected.indices.tolist()
    assert [label for _, label, _ in result.topk] == [categories[i] for i in expected.indices]
    assert [p for _, _, p in result.topk] == pytest.approx(expected.values.tolist(), rel=1e-5)
    assert all(a[2] >= b[2] for a, b in zip(result.topk, result.topk[1:], strict=False))


def test_input_is_torchvisions_preprocessing_and_view_is_what_it_saw(arch: str, analysed) -> None:
    picture, result = analysed(arch)
    expected = imagenet_weights(arch).transforms()(picture).unsqueeze(0)
    assert torch.equal(result.input, expected)
    assert result.view.mode == "RGB"
    assert result.view.size == (224, 224)
    assert result.size == (224, 224)
    mean = torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1)
    pixels = torch.from_numpy(np.array(result.view)).permute(2, 0, 1).float() / 255
    torch.testing.assert_close(result.input[0], (pixels - mean) / std, rtol=0, atol=1e-6)


def test_the_result_says_where_it_comes_from(arch: str, analysed) -> None:
    _, result = analysed(arch)
    assert result.model == arch
    assert result.source == "ramp.png"
    assert result.weights == "random (untrained, seed 0)"
    assert result.trained is False
    assert "centre crop 224×224" in result.preprocessing
    assert result.notice is None


def test_a_path_is_read_with_load_image(
    analyzer_of: AnalyzerOf, make_image, tmp_path: Path
) -> None:
    path = tmp_path / "picture.png"
    make_image(64, 64).save(path)
    result = analyzer_of("resnet101").analyze(path)
    assert result.source == str(path)
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 10)
    with pytest.raises(ImageLoadError, match=r"broken\.png: "):
        analyzer_of("resnet101").analyze(bad)


def test_timings_cover_every_leaf_layer_in_execution_order(arch: str, analysed) -> None:
    _, result = analysed(arch)
    with torch.device("meta"):  # its layers, not its weights (a VGG16's are 0.53 GB)
        model = build_model(arch, "random")
    leaves = {name: type(module).__name__ for name, module in leaf_modules(model)}
    names = [name for name, _, _ in result.timings]
    assert sorted(names) == sorted(leaves)
    assert all(kind == leaves[name] for name, kind, _ in result.timings)
    assert all(ms >= 0 for _, _, ms in result.timings)
    assert names[0] in {"features.0", "conv1"}
    assert names[-1] in {"classifier.6", "fc"}
    if arch == "resnet101":
        # Our Bottleneck computes its shortcut first: execution order, not definition order.
        assert names.index("layer1.0.downsample.0") < names.index("layer1.0.conv1")
        assert names.index("layer3.22.relu3") < names.index("layer4.0.downsample.0")


def test_timings_can_be_turned_off(analyzer_of: AnalyzerOf, image: Image.Image) -> None:
    shared = analyzer_of("resnet101")
    analyzer = Analyzer(shared.model, device=shared.device, timings=False)
    assert analyzer.analyze(image).timings == []


def test_hooks_are_removed_after_analysis_and_grad_cam(
    arch: str, analyzer_of: AnalyzerOf, image: Image.Image, hooks_left
) -> None:
    analyzer = analyzer_of(arch)
    result = analyzer.analyze(image)
    assert hooks_left(analyzer.model) == 0
    analyzer.gradcams(result)
    assert hooks_left(analyzer.model) == 0


def test_hooks_are_removed_when_the_forward_fails(
    analyzer_of: AnalyzerOf, image: Image.Image, hooks_left
) -> None:
    analyzer = analyzer_of("resnet101")

    def broken(_x: torch.Tensor) -> torch.Tensor:
        raise RuntimeError("broken layer")

    layer = analyzer.model.layer3[5].conv2
    # Patched by hand: older pytest's monkeypatch.undo() leaves the bound method in __dict__.
    layer.__dict__["forward"] = broken
    try:
        with pytest.raises(RuntimeError, match="broken layer"):
            analyzer.analyze(image)
        assert layer.forward is broken  # the timing wrapper gave back what it found
        assert hooks_left(analyzer.model) == 1  # that patched forward, nothing else
    finally:
        del layer.__dict__["forward"]
    assert hooks_left(analyzer.model) == 0
    assert len(analyzer.analyze(image).timings) == len(leaf_modules(analyzer.model))


# Analyses (each with its Grad-CAM) measured after five of warm-up, and how much resident
# memory may grow over them: 0.67 MiB per analysis (100 were allowed 64 MiB, 0.64 each). One
# analysis holds 7 MB (ResNet101 at 224×224): a result kept alive by each, 210 MB, is 10× the
# bound; a hook left per pass keeps its pass's stages too, and is counted besides.
ANALYSES = 30
ANALYSES_GROWTH_BOUND = 20 * 2**20


def test_repeated_analyses_leave_no_hook_and_no_memory_behind(
    analyzer_of: AnalyzerOf, make_image, hooks_left
) -> None:
    analyzer = analyzer_of("resnet101")
    pictures = [make_image(48, 40, seed=seed) for seed in range(4)]

    def analyse(count: int) -> weakref.ref[AnalysisResult]:
        for index in range(count):
            result = analyzer.analyze(pictures[index % 4])
            analyzer.gradcam(result, "C5")
        return weakref.ref(result)

    analyse(5)
    before = settled_resident_bytes()
    last = analyse(ANALYSES)
    growth = settled_resident_bytes() - before
    assert hooks_left(analyzer.model) == 0
    assert last() is None or analyzer.device.type != "cpu"  # nothing keeps results alive
    assert growth < ANALYSES_GROWTH_BOUND, f"resident memory grew by {growth / 2**20:.0f} MiB"


def test_concurrent_analyses_give_the_results_of_sequential_ones(
    analyzer_of: AnalyzerOf, make_image
) -> None:
    analyzer = analyzer_of("resnet101")
    pictures = [make_image(64, 48, seed=seed) for seed in range(4)]
    expected = [analyzer.analyze(p).logits for p in pictures]
    actual: dict[int, torch.Tensor] = {}

    def work(index: int) -> None:
        actual[index] = analyzer.analyze(pictures[index]).logits

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for index, logits in enumerate(expected):
        torch.testing.assert_close(actual[index], logits, rtol=0, atol=1e-5)


def test_a_built_network_can_be_analysed_but_not_in_training_mode() -> None:
    model = build_model("resnet101", "random")  # its own: it is put in training mode
    assert Analyzer(model, device="cpu").arch == "resnet101"
    model.train()
    with pytest.raises(ValueError, match="training mode"):
        Analyzer(model, device="cpu")
    assert model.training  # the caller's model was left as it was
    with pytest.raises(TypeError, match=r"models\.build_model"):
        Analyzer(nn.Linear(2, 2), device="cpu")


class _PretendAccelerator:
    """Makes an analyzer believe it runs on an accelerator whose first ``failures`` calls fail."""

    def __init__(self, analyzer: Analyzer, error: BaseException) -> None:
        self.analyzer = analyzer
        self.error = error
        self.calls = 0
        self.forward = analyzer._forward

    def __call__(self, x: torch.Tensor, *rest: object):
        self.calls += 1
        if self.calls == 1:
            raise self.error
        return self.forward(x, *rest)


def test_running_out_of_accelerator_memory_falls_back_to_the_cpu(
    image: Image.Image, monkeypatch: pytest.MonkeyPatch
) -> None:
    # No warm-up pass: it would run on the pretend device itself (the fall-back after a
    # warm-up is tested with a pretend GPU in tests/reliability/test_faults.py).
    analyzer = Analyzer(build_model("resnet101", "random"), device="cpu", warm_up=False)
    pretend = _PretendAccelerator(analyzer, torch.OutOfMemoryError("CUDA out of memory"))
    monkeypatch.setattr(analyzer, "_forward", pretend)
    analyzer.device = torch.device("meta")  # stands for the accelerator
    result = analyzer.analyze(image)
    assert pretend.calls == 2
    assert analyzer.device == torch.device("cpu")
    assert result.notice is not None
    assert "ran out of memory" in result.notice
    assert "CPU" in result.notice
    assert result.device.startswith("CPU")
    assert result.stages["C5"].shape == (2048, 7, 7)
    assert analyzer.analyze(image).notice == result.notice  # later results say so too


def test_other_errors_are_not_mistaken_for_a_failing_device(
    image: Image.Image, monkeypatch: pytest.MonkeyPatch
) -> None:
    analyzer = Analyzer(build_model("resnet101", "random"), device="cpu", warm_up=False)
    monkeypatch.setattr(analyzer, "_forward", _PretendAccelerator(analyzer, RuntimeError("bug")))
    analyzer.device = torch.device("meta")
    with pytest.raises(RuntimeError, match="bug"):
        analyzer.analyze(image)
    assert analyzer.device == torch.device("meta")


def test_on_the_cpu_running_out_of_memory_is_raised(
    image: Image.Image, monkeypatch: pytest.MonkeyPatch
) -> None:
    analyzer = Analyzer(build_model("resnet101", "random"), device="cpu")
    monkeypatch.setattr(
        analyzer, "_forward", _PretendAccelerator(analyzer, torch.OutOfMemoryError("no RAM"))
    )
    with pytest.raises(torch.OutOfMemoryError):
        analyzer.analyze(image)


def test_an_input_already_made_gives_the_same_analysis(analysed, analyzer_of) -> None:
    _, result = analysed("resnet101")
    analyzer = analyzer_of("resnet101")
    again = analyzer.analyze_input(result.input, result.view, source="mine")
    assert again.source == "mine"
    torch.testing.assert_close(again.logits, result.logits, rtol=0, atol=1e-5)
    assert again.topk[0][0] == result.topk[0][0]
    with pytest.raises(ValueError, match=r"expected an input of shape \(1, 3, H, W\)"):
        analyzer.analyze_input(result.input[0], result.view)


def test_two_analyzers_sharing_a_network_take_turns(
    analyzer_of: AnalyzerOf, make_image, hooks_left
) -> None:
    first = analyzer_of("resnet101")
    second = Analyzer(first.model, device=first.device)
    pictures = [make_image(64, 48, seed=seed) for seed in range(4)]
    expected = [first.analyze(p) for p in pictures]
    cams = [first.gradcam(r, "C4") for r in expected]
    actual: dict[int, tuple[AnalysisResult, np.ndarray]] = {}

    def work(index: int) -> None:
        analyzer = (first, second)[index % 2]
        result = analyzer.analyze(pictures[index])
        actual[index] = (result, analyzer.gradcam(result, "C4"))

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for index in range(4):
        result, cam = actual[index]
        for stage in STAGE_NAMES:
            torch.testing.assert_close(result.stages[stage], expected[index].stages[stage])
        assert len(result.timings) == len(leaf_modules(first.model))
        assert np.abs(cam - cams[index]).max() <= 1e-5
    assert hooks_left(first.model) == 0


def test_analysis_and_grad_cam_work_inside_inference_mode(
    analyzer_of: AnalyzerOf, image: Image.Image
) -> None:
    analyzer = analyzer_of("resnet101")
    expected = analyzer.gradcam(analyzer.analyze(image), "C3")
    with torch.inference_mode():
        result = analyzer.analyze(image)
        cam = analyzer.gradcam(result, "C3")
    assert np.abs(cam - expected).max() <= 1e-5


def test_channels_last_gives_the_same_results_in_the_usual_layout(
    analysed, analyzer_of: AnalyzerOf, device: str
) -> None:
    """The option changes how the device holds tensors, never what the user gets."""
    picture, usual = analysed("resnet101")
    analyzer = Analyzer(
        build_model("resnet101", "random"), device=device, channels_last=True, progress=False
    )
    assert analyzer.model.conv1.weight.is_contiguous(memory_format=torch.channels_last)
    result = analyzer.analyze(picture, source="ramp.png")
    for stage in STAGE_NAMES:
        assert result.stages[stage].is_contiguous()
        # Another convolution algorithm sums in another order: float32 rounding, relative to
        # the stage's scale (a random network's activations grow large with depth).
        scale = float(usual.stages[stage].abs().max())
        torch.testing.assert_close(
            result.stages[stage], usual.stages[stage], rtol=1e-4, atol=1e-5 * scale
        )
    scale = float(usual.logits.abs().max())
    torch.testing.assert_close(result.logits, usual.logits, rtol=1e-4, atol=1e-5 * scale)
    assert [name for name, _, _ in result.timings] == [name for name, _, _ in usual.timings]
    cam = analyzer.gradcam(result, "C4")
    reference = analysed_cam(usual, analyzer_of("resnet101").model, device)
    np.testing.assert_allclose(cam, reference, atol=1e-3)


def analysed_cam(result: AnalysisResult, network: nn.Module, device: str) -> np.ndarray:
    """The Grad-CAM at C4 of another analyzer of ``network`` in the usual layout, for the same
    class (the result is not its own: it runs the network again from the input)."""
    analyzer = Analyzer(network, device=device, progress=False)
    return analyzer.gradcam(result, "C4", result.topk[0][0])


class SlowFirstPass:
    """Makes the first pass through a network's first convolution take ``seconds`` longer, as
    a cold first pass does (allocations, kernel selection), and counts the passes. The delay is
    inside the layer's ``forward``, where per-layer timing sees it."""

    def __init__(self, analyzer: Analyzer, seconds: float) -> None:
        import time

        self.passes = 0
        self.layer = next(m for m in analyzer.model.modules() if isinstance(m, nn.Conv2d))
        plain = type(self.layer).forward.__get__(self.layer)

        def forward(x: torch.Tensor) -> torch.Tensor:
            self.passes += 1
            if self.passes == 1:
                time.sleep(seconds)
            return plain(x)

        self.layer.__dict__["forward"] = forward

    def remove(self) -> None:
        del self.layer.__dict__["forward"]


def test_timings_are_steady_state_the_cold_first_pass_is_not_timed(
    analyzer_of: AnalyzerOf, image: Image.Image
) -> None:
    """The first analysis after start-up must not show the one-off cost of a cold first pass."""
    analyzer = Analyzer(analyzer_of("vgg16").model, device="cpu")
    slow = SlowFirstPass(analyzer, 0.5)
    try:
        first = analyzer.analyze(image)
        second = analyzer.analyze(image)
    finally:
        slow.remove()
    assert slow.passes == 3  # one untimed warm-up, then one pass per analysis
    first_conv_ms = next(ms for _, kind, ms in first.timings if kind == "Conv2d")
    assert first_conv_ms < 500  # the 0.5 s of the cold pass is not in the timings
    assert not first.cold
    assert not second.cold
    assert first.timing == second.timing == "steady state: after one untimed warm-up pass"


def test_without_a_warm_up_the_cold_first_pass_is_labelled_as_such(
    analyzer_of: AnalyzerOf, image: Image.Image
) -> None:
    analyzer = Analyzer(analyzer_of("vgg16").model, device="cpu", warm_up=False)
    slow = SlowFirstPass(analyzer, 0.3)
    try:
        first = analyzer.analyze(image)
        second = analyzer.analyze(image)
    finally:
        slow.remove()
    assert slow.passes == 2
    first_conv_ms = next(ms for _, kind, ms in first.timings if kind == "Conv2d")
    assert first_conv_ms >= 300
    assert first.cold
    assert first.timing == "cold: the network's first pass on this device"
    assert not second.cold


def test_with_timings_off_there_is_no_warm_up_pass(
    analyzer_of: AnalyzerOf, image: Image.Image
) -> None:
    analyzer = Analyzer(analyzer_of("vgg16").model, device="cpu", timings=False)
    slow = SlowFirstPass(analyzer, 0.0)
    try:
        result = analyzer.analyze(image)
    finally:
        slow.remove()
    assert slow.passes == 1
    assert result.timings == []
    assert not result.cold
