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
from torch import nn

from models import build_model
from tests.finetuned import pictures, reference_network
from visualizer.core.attribution_methods import METHODS, attribute
from visualizer.core.faithfulness import faithfulness

SIZE = 128  # pixels: every method's arithmetic is the same at any size (C5: 4×4)


@pytest.fixture(scope="module")
def pair() -> tuple[nn.Module, nn.Module, torch.Tensor, int]:
    """torchvision's ResNet101 and ours with its weights, an input and its top-1 class."""
    # Calibrated as a trained network is (tests/finetuned.py): logits of a few units, so the
    # probabilities and maps are not all 0 and 1.
    theirs = reference_network("resnet101", 1000)
    ours = build_model("resnet101", "random")
    ours.load_state_dict(theirs.state_dict())
    x = pictures(3, seed=15, size=SIZE)[:1]
    with torch.no_grad():  # its top-1 class: Grad-CAM's ReLU may leave nothing of another
        target = int(theirs(x).argmax())
    return theirs, ours.eval(), x, target


def captum(theirs: nn.Module, x: torch.Tensor, method: str, target: int) -> torch.Tensor:
    """Captum called directly, with the defaults of ``attribution_methods.DEFAULTS``."""
    x = x.clone().requires_grad_()
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
        return IntegratedGradients(theirs).attribute(
            x, target=target, n_steps=50, baselines=0.0, internal_batch_size=16
        )
    if method == "occlusion":
        return Occlusion(theirs).attribute(
            x,
            target=target,
            sliding_window_shapes=(3, 32, 32),
            strides=(3, 16, 16),
            baselines=0.0,
            perturbations_per_eval=16,
        )
    torch.manual_seed(0)
    if method == "smoothgrad-saliency":
        return NoiseTunnel(Saliency(theirs)).attribute(
            x, nt_type="smoothgrad", target=target, abs=True, nt_samples=16, stdevs=0.15,
            nt_samples_batch_size=8,
        )  # fmt: skip
    return NoiseTunnel(IntegratedGradients(theirs)).attribute(
        x, nt_type="smoothgrad", target=target, nt_samples=8, stdevs=0.15, n_steps=20,
        baselines=0.0, nt_samples_batch_size=1, internal_batch_size=20,
    )  # fmt: skip


@pytest.mark.parametrize("method", METHODS)
def test_each_method_is_captums_own(pair, method: str) -> None:
    theirs, ours, x, target = pair
    layer = ours.layer4 if method in ("gradcam", "guided-gradcam") else None
    result = attribute(ours, x, method, target, layer=layer, layer_name="C5" if layer else None)
    expected = captum(theirs, x, method, target).detach()
    assert result.raw.shape == expected.shape
    assert float(expected.abs().max()) > 0  # a map of zeros would prove nothing
    assert float((result.raw - expected).abs().max()) < 1e-5
    assert result.map.shape == (SIZE, SIZE)
    assert result.map.dtype == np.float32
    assert result.map.min() == 0.0
    assert result.map.max() == 1.0
    assert all(m.inplace for m in ours.modules() if isinstance(m, nn.ReLU))  # as it was


def test_the_curves_equal_a_plain_loop(pair) -> None:
    _, ours, x, target = pair
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
