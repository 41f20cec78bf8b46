"""Fine-tuned checkpoints as training scripts write them, made by the tests themselves.

The networks are torchvision's own ``vgg16`` and ``resnet101`` built with ``num_classes=N``
(and, for a grey-scale model, a first convolution that takes one channel) under a fixed seed,
with their BatchNorm statistics moved off their initial values as training would. They are the
independent reference: the engine's logits and Grad-CAM must equal theirs on the same weights.

Shared by tests/models/test_finetuned.py, tests/core/test_custom_network.py and
tests/core/test_labels.py. ResNet101's weights are 0.17 GB, VGG16's 0.53 GB: build each
network once per module and let the checkpoint files go after their tests.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn

SEED = 14
# The module whose output is each stage (DESIGN §2), in torchvision's names.
STAGE_MODULES = {
    "vgg16": {"C1": "features.3", "C3": "features.15", "C5": "features.29"},
    "resnet101": {"C1": "maxpool", "C3": "layer2", "C5": "layer4"},
}
HEAD_KEYS = {"vgg16": "classifier.6", "resnet101": "fc"}
FIRST_CONV_KEYS = {"vgg16": "features.0", "resnet101": "conv1"}

State = dict[str, torch.Tensor]


def reference_network(
    arch: str, num_classes: int, in_channels: int = 3, seed: int = SEED
) -> nn.Module:
    """torchvision's ``arch`` with ``num_classes`` outputs and ``in_channels`` input channels,
    initialised under ``seed`` (the global generator is left alone), in eval mode."""
    import torchvision

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        network = getattr(torchvision.models, arch)(num_classes=num_classes)
        if in_channels != 3:
            if arch == "resnet101":
                network.conv1 = nn.Conv2d(in_channels, 64, 7, 2, 3, bias=False)
            else:
                network.features[0] = nn.Conv2d(in_channels, 64, 3, padding=1)
    _trained_like(network, seed, in_channels)
    _scaled_head(network, arch, in_channels, seed)
    return network.eval()


def _trained_like(network: nn.Module, seed: int, in_channels: int) -> None:
    """BatchNorm as after training: affine parameters moved off 1 / 0, and running statistics
    measured on a batch (torchvision's initial 0 / 1 would let ResNet101's activations grow
    block after block to logits in the tens of thousands, nothing like a trained network's).
    A loader that dropped or reset any of them would change the logits."""
    generator = torch.Generator().manual_seed(seed + 1)
    norms = [module for module in network.modules() if isinstance(module, nn.BatchNorm2d)]
    with torch.no_grad():
        for norm in norms:
            size = norm.num_features
            norm.weight.copy_(0.8 + 0.4 * torch.rand(size, generator=generator))
            norm.bias.copy_(0.1 * torch.randn(size, generator=generator))
            norm.reset_running_stats()
            norm.momentum = None  # a cumulative average over the batches below
        batch = pictures(in_channels, seed)
        network.train()
        network(batch)
        network.eval()
        for norm in norms:
            norm.momentum = 0.1
            norm.num_batches_tracked.fill_(1234)


def pictures(in_channels: int, seed: int, size: int = 128) -> torch.Tensor:
    """Two pictures like those the tests analyse (smooth, structured: a network's activations
    on them are far larger than on white noise), normalised, ``(2, in_channels, size, size)``."""
    images = [picture(size, size, seed=seed), picture(size, size, seed=seed + 1).rotate(90)]
    pixels = np.stack(
        [np.asarray(image.convert("RGB" if in_channels == 3 else "L")) for image in images]
    )
    batch = torch.from_numpy(pixels).float().div(255).sub(0.45).div(0.225)
    return batch.permute(0, 3, 1, 2) if in_channels == 3 else batch.unsqueeze(1)


def _scaled_head(network: nn.Module, arch: str, in_channels: int, seed: int) -> None:
    """The head's weights scaled so that logits are a few units, as a trained head's are (at
    its initial scale ResNet101's are hundreds, VGG16's hundredths: softmax would be all or
    nothing, or flat)."""
    head = dict(network.named_modules())[HEAD_KEYS[arch]]
    batch = pictures(in_channels, seed + 2)
    with torch.no_grad():
        spread = float((network(batch) - head.bias).abs().max())
        head.weight.mul_(4.0 / spread)
        head.bias.copy_(
            0.1 * torch.randn(head.bias.shape, generator=torch.Generator().manual_seed(seed + 3))
        )


def state_of(network: nn.Module) -> State:
    """The network's state dict, detached, in torchvision's names."""
    return {key: value.detach() for key, value in network.state_dict().items()}


# --- what training scripts save next to the weights ---------------------------------------------


def head_optimizer_state(state: State, arch: str) -> dict[str, object]:
    """A real SGD optimizer's state dict (momentum buffers) for the head's parameters: what a
    fine-tuning script that trains the head saves beside the weights (integer keys)."""
    head = HEAD_KEYS[arch]
    parameters = [nn.Parameter(state[f"{head}.{name}"].clone()) for name in ("weight", "bias")]
    optimizer = torch.optim.SGD(parameters, lr=0.01, momentum=0.9, weight_decay=1e-4)
    for parameter in parameters:
        parameter.grad = torch.full_like(parameter, 1e-3)
    optimizer.step()
    return optimizer.state_dict()


def lightning(state: State, arch: str, extras: Mapping[str, object] | None = None) -> dict:
    """A PyTorch Lightning checkpoint: the LightningModule holds the network as ``self.model``,
    so every key begins ``model.``; the training state around it holds tensors and dicts too."""
    num_classes = state[f"{HEAD_KEYS[arch]}.weight"].shape[0]
    return {
        "epoch": 3,
        "global_step": 120,
        "pytorch-lightning_version": "2.4.0",
        "state_dict": {f"model.{key}": value for key, value in state.items()},
        "loops": {"fit_loop": {"state_dict": {}, "epoch_progress": {"total": {"ready": 4}}}},
        "callbacks": {
            "ModelCheckpoint{'monitor': 'val_loss', 'mode': 'min'}": {
                "monitor": "val_loss",
                "best_model_score": torch.tensor(0.4321),
                "best_model_path": "/runs/epoch=3.ckpt",
            }
        },
        "optimizer_states": [head_optimizer_state(state, arch)],
        "lr_schedulers": [{"base_lrs": [0.01], "last_epoch": 3, "step_size": 10}],
        "hparams_name": "kwargs",
        "hyper_parameters": {"num_classes": num_classes, "lr": 0.01, "backbone": arch},
        **(extras or {}),
    }


def nested(
    state: State,
    arch: str,
    key: str = "net",
    extras: Mapping | None = None,
    prefix: str = "",
) -> dict:
    """The weights one level down under ``key`` (each name after ``prefix``), beside an
    optimizer's state and the epoch."""
    return {
        key: prefixed(state, prefix),
        "optimizer": head_optimizer_state(state, arch),
        "epoch": 5,
        **(extras or {}),
    }


def prefixed(state: State, prefix: str) -> State:
    return {prefix + key: value for key, value in state.items()}


def save(path: Path, checkpoint: object) -> Path:
    """``torch.save`` for ``.pth``/``.pt``/``.ckpt``, safetensors for ``.safetensors``."""
    if path.suffix == ".safetensors":
        import safetensors.torch

        safetensors.torch.save_file(dict(checkpoint), path)  # type: ignore[call-overload]
    else:
        torch.save(checkpoint, path)
    return path


# Every way to save a state dict the engine accepts: name → (suffix, make, unwrapped), where
# ``unwrapped`` lists the words weights_info.unwrapped must hold (None: nothing was removed).
Layout = tuple[str, Callable[[State, str], object], tuple[str, ...] | None]
LAYOUTS: dict[str, Layout] = {
    "plain": (".pth", lambda state, arch: state, None),
    "lightning": (".ckpt", lightning, ("state_dict", "model.")),
    "nested-net-with-optimizer": (".pth", nested, ("net",)),
    "ddp-of-compiled": (
        ".pth",
        lambda state, arch: prefixed(state, "module._orig_mod."),
        ("module.", "_orig_mod."),
    ),
    "compiled-ddp": (
        ".pt",
        lambda state, arch: prefixed(state, "_orig_mod.module."),
        ("_orig_mod.", "module."),
    ),
    "backbone": (".pth", lambda state, arch: prefixed(state, "backbone."), ("backbone.",)),
    "ema-module": (".pth", lambda state, arch: prefixed(state, "module."), ("module.",)),
    "lightning-of-ddp": (
        ".pth",
        lambda state, arch: {"state_dict": prefixed(state, "model.module."), "epoch": 9},
        ("state_dict", "model.", "module."),
    ),
    "nested-ema-prefixed": (
        ".pth",
        lambda state, arch: nested(state, arch, key="model_ema", prefix="net."),
        ("model_ema", "net."),
    ),
    # torch.optim.swa_utils.AveragedModel (EMA / SWA): the network as ``module``, and a
    # counter of its own beside it.
    "averaged-model-ema": (
        ".pth",
        lambda state, arch: {**prefixed(state, "module."), "n_averaged": torch.tensor(7)},
        ("module.", "n_averaged"),
    ),
    "safetensors": (".safetensors", lambda state, arch: state, None),
    "safetensors-prefixed": (
        ".safetensors",
        lambda state, arch: prefixed(state, "model."),
        ("model.",),
    ),
}


# --- unsafe content ---------------------------------------------------------------------------


class Payload:
    """Unpickling this runs ``code``: what a malicious checkpoint does."""

    def __init__(self, code: str) -> None:
        self.code = code

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (exec, (self.code,))


def with_namespace_hyper_parameters(state: State) -> dict:
    """A Lightning-style checkpoint whose hyper-parameters are an ``argparse.Namespace``: a
    class instance that ``weights_only`` loading refuses."""
    return {
        "state_dict": prefixed(state, "model."),
        "hyper_parameters": argparse.Namespace(lr=0.01, num_classes=5),
        "epoch": 3,
    }


# --- images -----------------------------------------------------------------------------------


def picture(width: int = 160, height: int = 120, seed: int = 5) -> Image.Image:
    """An RGB picture with structure (ramps, a bright disc, a little noise) in which colour
    matters: its grey-scale conversion differs from any single channel."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    disc = ((x - 0.6 * width) ** 2 + (y - 0.4 * height) ** 2) < (0.2 * height) ** 2
    pixels = np.stack(
        [
            255 * x / max(width - 1, 1),
            255 * y / max(height - 1, 1),
            128 + 80 * np.sin(x / 6) * np.cos(y / 9),
        ],
        axis=-1,
    )
    pixels[disc] = (250, 220, 40)
    pixels += rng.normal(0, 10, pixels.shape)
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "RGB")


def rgb_input(
    image: Image.Image, resize: int, crop: int, mean: tuple[float, ...], std: tuple[float, ...]
) -> torch.Tensor:
    """torchvision's evaluation pipeline, written out: resize the shorter side (bilinear,
    antialiased), centre crop, to a tensor in [0, 1], normalise. ``(1, 3, crop, crop)``."""
    from torchvision import transforms

    pipeline = transforms.Compose(
        [
            transforms.Resize(resize, interpolation=transforms.InterpolationMode.BILINEAR),
            transforms.CenterCrop(crop),
            transforms.ToTensor(),
            transforms.Normalize(mean, std),
        ]
    )
    return pipeline(image.convert("RGB")).unsqueeze(0)


def grey_input(
    image: Image.Image, resize: int, crop: int, mean: float, std: float
) -> tuple[torch.Tensor, Image.Image]:
    """torchvision's grey pipeline: Pillow's ``convert("L")``, resize, centre crop, to a
    tensor, normalise with one mean and std. ``(1, 1, crop, crop)`` and the grey crop."""
    from torchvision import transforms

    grey = transforms.CenterCrop(crop)(
        transforms.Resize(resize, interpolation=transforms.InterpolationMode.BILINEAR)(
            image.convert("L")
        )
    )
    x = transforms.Normalize([mean], [std])(transforms.ToTensor()(grey))
    return x.unsqueeze(0), grey


def captum_gradcam(
    network: nn.Module, layer: nn.Module, x: torch.Tensor, target: int
) -> np.ndarray:
    """Captum's ``LayerGradCam`` called directly, upsampled bilinearly with Captum's own
    ``LayerAttribution.interpolate`` and min–max scaled, as DESIGN §3 defines Grad-CAM."""
    from captum.attr import LayerAttribution, LayerGradCam

    attribution = LayerGradCam(network, layer).attribute(x, target=target, relu_attributions=True)
    upsampled = LayerAttribution.interpolate(
        attribution, tuple(x.shape[-2:]), interpolate_mode="bilinear"
    )[0, 0]
    low, high = upsampled.min(), upsampled.max()
    scaled = (upsampled - low) / (high - low) if high > low else torch.zeros_like(upsampled)
    return scaled.detach().numpy()


def module_named(network: nn.Module, name: str) -> nn.Module:
    return dict(network.named_modules())[name]


def logits_of(network: nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.inference_mode():
        return network(x)
