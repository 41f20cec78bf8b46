"""Every attribution method is Captum's own call: ``.raw`` equals Captum called directly on
torchvision's network with the same weights and parameters; the deletion and insertion curves
equal a plain loop over the pixels."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from captum.attr import (
    GuidedGradCam,
    IntegratedGradients,
    LayerGradCam,
    NoiseTunnel,
    Occlusion,
    Saliency,
)
from PIL import Image
from torch import nn

from models import build_model
from tests.finetuned import pictures, reference_network
from visualizer.core import Analyzer
from visualizer.core.analysis import AnalysisResult
from visualizer.core.attribution_methods import (
    DEFAULTS,
    LAYER_METHODS,
    METHOD_PARAMETERS,
    METHODS,
    CancelledError,
    defaults,
    passes,
)
from visualizer.core.faithfulness import faithfulness

SIZE = 64  # pixels: every method's arithmetic is the same at any size (C5: 2×2)
# Captum's parameters, small so the tests are quick, batched unevenly so batching is tested.
PARAMETERS: dict[str, dict[str, object]] = {
    "gradcam": {},
    "guided-gradcam": {},
    "saliency": {},
    "integrated-gradients": {"n_steps": 8, "baselines": 0.0, "internal_batch_size": 3},
    "occlusion": {
        "sliding_window_shapes": (16, 16),
        "strides": (12, 12),
        "baselines": 0.0,
        "perturbations_per_eval": 5,
    },
    "smoothgrad-saliency": {"nt_samples": 4, "stdevs": 0.15, "nt_samples_batch_size": 3},
    "smoothgrad-ig": {
        "nt_samples": 3,
        "stdevs": 0.15,
        "n_steps": 4,
        "baselines": 0.0,
        "nt_samples_batch_size": 2,
        "internal_batch_size": 4,
    },
}


@pytest.fixture(scope="module")
def pair() -> tuple[nn.Module, Analyzer, AnalysisResult]:
    """torchvision's ResNet101, an Analyzer of ours with its weights, and an analysis."""
    # Calibrated as a trained network is (tests/finetuned.py): logits of a few units, so the
    # probabilities and maps are not all 0 and 1.
    theirs = reference_network("resnet101", 1000)
    ours = build_model("resnet101", "random", progress=False)
    ours.load_state_dict(theirs.state_dict())
    analyzer = Analyzer(ours.eval(), device="cpu", resize=SIZE, crop=SIZE, warm_up=False)
    x = pictures(3, seed=15, size=SIZE)[:1]
    view = Image.new("RGB", (SIZE, SIZE))
    return theirs, analyzer, analyzer.analyze_input(x, view)


def captum(theirs: nn.Module, x: torch.Tensor, method: str, target: int) -> torch.Tensor:
    """Captum called directly on torchvision's network, with ``PARAMETERS``."""
    x = x.clone().requires_grad_()
    p = PARAMETERS[method]
    if method == "gradcam":
        return LayerGradCam(theirs, theirs.layer4).attribute(
            x, target=target, relu_attributions=True
        )
    if method == "guided-gradcam":
        for module in theirs.modules():  # captum#973: guided backprop needs out-of-place ReLUs
            if isinstance(module, nn.ReLU):
                module.inplace = False
        try:
            with pytest.warns(UserWarning, match="backward hooks on ReLU"):  # Captum's notice
                return GuidedGradCam(theirs, theirs.layer4).attribute(x, target=target)
        finally:
            for module in theirs.modules():
                if isinstance(module, nn.ReLU):
                    module.inplace = True
    if method == "saliency":
        return Saliency(theirs).attribute(x, target=target, abs=True)
    if method == "integrated-gradients":
        return IntegratedGradients(theirs).attribute(x, target=target, **p)
    if method == "occlusion":
        return Occlusion(theirs).attribute(
            x,
            target=target,
            sliding_window_shapes=(3, 16, 16),
            strides=(3, 12, 12),
            baselines=0.0,
            perturbations_per_eval=5,
        )
    torch.manual_seed(0)
    if method == "smoothgrad-saliency":
        return NoiseTunnel(Saliency(theirs)).attribute(
            x, nt_type="smoothgrad", target=target, abs=True, **p
        )
    return NoiseTunnel(IntegratedGradients(theirs)).attribute(
        x, nt_type="smoothgrad", target=target, **p
    )


@pytest.mark.parametrize("method", METHODS)
def test_each_method_is_captums_own(pair, method: str) -> None:
    theirs, analyzer, result = pair
    target = result.topk[0][0]
    told: list[tuple[int, int]] = []
    found = analyzer.attribute(
        result,
        method,
        progress=lambda done, total: told.append((done, total)),
        **PARAMETERS[method],
    )
    expected = captum(theirs, result.input, method, target).detach()
    assert found.method == method
    assert found.target == target
    assert found.layer == ("C5" if method in LAYER_METHODS else None)
    assert dict(found.parameters) == {**DEFAULTS[method], **PARAMETERS[method]}
    assert found.raw.shape == expected.shape
    assert float(expected.abs().max()) > 0  # a map of zeros would prove nothing
    assert float((found.raw - expected).abs().max()) < 1e-5
    assert found.map.shape == (SIZE, SIZE)
    assert found.map.dtype == np.float32
    assert found.map.min() == 0.0
    assert found.map.max() == 1.0
    model = analyzer.model
    assert all(m.inplace for m in model.modules() if isinstance(m, nn.ReLU))  # as it was
    # Progress heard of every pass of the network, as many as ``passes`` foretold.
    total = passes(method, found.parameters, (SIZE, SIZE))
    assert told == [(done, total) for done in range(1, total + 1)]


def test_smoothgrad_is_the_same_every_time_and_leaves_the_global_generator(pair) -> None:
    _, analyzer, result = pair
    torch.manual_seed(123)
    before = torch.rand(3)
    torch.manual_seed(123)
    first = analyzer.attribute(result, "smoothgrad-saliency", **PARAMETERS["smoothgrad-saliency"])
    assert torch.equal(torch.rand(3), before)
    again = analyzer.attribute(result, "smoothgrad-saliency", **PARAMETERS["smoothgrad-saliency"])
    assert torch.equal(first.raw, again.raw)


@pytest.mark.parametrize("method", ["guided-gradcam", "occlusion"])
def test_a_method_stopped_by_progress_leaves_the_network_as_it_was(
    pair, method: str, hooks_left
) -> None:
    _, analyzer, result = pair

    def stop(done: int, _total: int) -> None:
        if done == 1:
            raise CancelledError

    with pytest.raises(CancelledError):
        analyzer.attribute(result, method, progress=stop, **PARAMETERS[method])
    model = analyzer.model
    assert hooks_left(model) == 0
    assert all(m.inplace for m in model.modules() if isinstance(m, nn.ReLU))
    # and it works again after
    assert analyzer.attribute(result, "saliency").map.max() == 1.0


def test_bad_requests_are_refused_with_the_reason(pair) -> None:
    _, analyzer, result = pair
    with pytest.raises(ValueError, match="unknown method 'lime': choose one of gradcam"):
        analyzer.attribute(result, "lime")
    with pytest.raises(ValueError, match="saliency takes no layer"):
        analyzer.attribute(result, "saliency", layer="C3")
    with pytest.raises(ValueError, match="unknown layer 'layer9'"):
        analyzer.attribute(result, "guided-gradcam", layer="layer9")
    with pytest.raises(ValueError, match="target 1000 is not a class index"):
        analyzer.attribute(result, "saliency", target=1000)
    with pytest.raises(TypeError, match="integrated-gradients takes no parameter 'n_step': it"):
        analyzer.attribute(result, "integrated-gradients", n_step=3)
    # fmviz's own settings of Captum's calls, and those that would change what Captum returns
    for method, name in [
        ("gradcam", "relu_attributions"),
        ("saliency", "abs"),
        ("smoothgrad-saliency", "nt_type"),
        ("integrated-gradients", "return_convergence_delta"),
    ]:
        with pytest.raises(TypeError, match=f"{method} takes no parameter '{name}'"):
            analyzer.attribute(result, method, **{name: True})


def test_every_default_is_a_parameter_a_user_may_set() -> None:
    assert tuple(DEFAULTS) == METHODS
    for method, chosen in DEFAULTS.items():
        assert set(chosen) <= set(METHOD_PARAMETERS[method]), method


def test_one_number_is_a_square_occlusion_window(pair) -> None:
    _, analyzer, result = pair
    square = analyzer.attribute(
        result, "occlusion", sliding_window_shapes=16, strides=12, perturbations_per_eval=5
    )
    assert square.parameters["sliding_window_shapes"] == (16, 16)
    assert square.parameters["strides"] == (12, 12)
    expected = analyzer.attribute(result, "occlusion", **PARAMETERS["occlusion"])
    assert torch.equal(square.raw, expected.raw)


def test_gpu_defaults_batch_more_under_the_same_names() -> None:
    for method in METHODS:
        cpu, gpu = defaults(method, "cpu"), defaults(method, "cuda")
        assert set(cpu) == set(gpu) == set(DEFAULTS[method])
        for name, value in cpu.items():
            if "batch" in name or name == "perturbations_per_eval":
                assert gpu[name] >= value
            else:
                assert gpu[name] == value
    assert defaults("occlusion", "cuda")["perturbations_per_eval"] > 16


def test_faithfulness_of_an_attribution_equals_the_function_on_its_map(pair) -> None:
    _, analyzer, result = pair
    found = analyzer.attribute(result, "saliency")
    told: list[int] = []
    through = analyzer.faithfulness(result, found, steps=4, progress=lambda d, t: told.append(t))
    direct = faithfulness(analyzer.model, result.input, found.map, found.target, steps=4)
    assert np.array_equal(through.deletion, direct.deletion)
    assert through.insertion_auc == direct.insertion_auc
    assert told == [2, 2]  # 5 points a curve, one batch of 16 each
    flat = analyzer.faithfulness(result, found.map, target=found.target, steps=4)
    assert flat.deletion_auc == direct.deletion_auc


def test_the_curves_equal_a_plain_loop(pair) -> None:
    _, analyzer, result = pair
    ours, x, target = analyzer.model, result.input, result.topk[0][0]
    rng = np.random.default_rng(0)
    heat = rng.random((SIZE, SIZE)).astype(np.float32)
    steps = 8
    found = faithfulness(ours, x, heat, target, steps=steps, batch_size=3)
    order = np.argsort(-heat.reshape(-1), kind="stable")
    for index, fraction in enumerate(found.fractions):
        count = round(fraction * SIZE * SIZE)
        removed = np.zeros(SIZE * SIZE, bool)
        removed[order[:count]] = True
        mask = torch.from_numpy(removed.reshape(1, 1, SIZE, SIZE))
        deleted = torch.where(mask, torch.zeros_like(x), x)
        inserted = torch.where(mask, x, torch.zeros_like(x))
        with torch.no_grad():
            deletion = torch.softmax(ours(deleted), 1)[0, target]
            insertion = torch.softmax(ours(inserted), 1)[0, target]
        # Batched and one at a time, a convolution's float32 sums may differ in the last bits.
        assert found.deletion[index] == pytest.approx(float(deletion), abs=1e-5)
        assert found.insertion[index] == pytest.approx(float(insertion), abs=1e-5)
    x_axis = found.fractions
    for curve, auc in (
        (found.deletion, found.deletion_auc),
        (found.insertion, found.insertion_auc),
    ):
        trapezoids = [
            (curve[i] + curve[i + 1]) / 2 * (x_axis[i + 1] - x_axis[i]) for i in range(steps)
        ]
        assert auc == pytest.approx(sum(trapezoids), abs=1e-9)
    assert 0 < found.deletion_auc < 1
    assert 0 < found.insertion_auc < 1
