"""Where a network's weights come from: ``"imagenet"``, ``"random"`` or a checkpoint file.

Checkpoints are read without ever executing code from them: ``.pth``/``.pt`` files through
``torch.load(..., weights_only=True)`` and ``.safetensors`` files through safetensors. Anything
else, and anything that does not fit the network, is refused with a one-line ``WeightsError``.
"""

from __future__ import annotations

import errno
import http.client
import os
import re
import socket
import ssl
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import torch
from torch import nn

RANDOM_SEED = 0
# Where training scripts put the state dict in a checkpoint that holds other training state too
# (optimizer, epoch, hyper-parameters), most usual first; any other key holding one is found too.
NESTED_KEYS = ("state_dict", "model", "model_state_dict", "net", "network", "weights")
# Prefixes that wrappers and training frameworks put on every key: DataParallel and
# DistributedDataParallel (``module.``), torch.compile (``_orig_mod.``), a Lightning module's
# attribute (``model.``, ``net.``, ``backbone.``). With the architecture known, any prefix
# common to every key is removed when what is left fits it.
WRAPPER_PREFIXES = ("module.", "_orig_mod.", "model.", "net.", "backbone.")
# Keys that wrappers add beside the wrapped network's: torch.optim.swa_utils.AveragedModel
# (EMA, SWA) counts its averages in ``n_averaged``.
WRAPPER_KEYS = ("n_averaged",)
# Values a training script may save next to the state dict that say how to use the network.
LABEL_KEYS = ("classes", "class_names", "idx_to_class", "class_to_idx", "labels")
PREPROCESSING_KEYS = ("mean", "std", "input_size")
# Mappings of hyper-parameters where those values may be found too (Lightning, timm, scripts).
SETTINGS_KEYS = ("hyper_parameters", "hparams", "args", "config", "meta", "metadata")
# The head's weight (its rows are the classes) and the first convolution's (its second
# dimension is the input channels), by architecture.
HEAD_WEIGHT = {"vgg16": "classifier.6.weight", "resnet101": "fc.weight"}
FIRST_CONV = {"vgg16": "features.0.weight", "resnet101": "conv1.weight"}
INPUT_CHANNELS = (3, 1)  # RGB, or grey-scale
CONNECT_TIMEOUT_S = 10.0
MAX_KEYS_NAMED = 3
PATH_SHOWN = 200  # characters of a file name shown in a message
UNSAFE_GLOBAL = re.compile(r"unsupported (?:global: )?GLOBAL ([\w.]+)", re.IGNORECASE)
# Lines of torch.load's error messages that explain torch's policy, not the file.
BOILERPLATE = ("Weights only load failed", "Please file an issue", "Check the documentation")

# torchvision's ImageNet checkpoints: the best weights it publishes for each network.
IMAGENET_WEIGHTS = {
    "vgg16": "VGG16_Weights.IMAGENET1K_V1",
    "resnet101": "ResNet101_Weights.IMAGENET1K_V2",
}


class WeightsError(RuntimeError):
    """Weights could not be had. The message is one line: the source (file, URL) and why."""


class ImageNetUnavailable(WeightsError):  # noqa: N818 - says what happened
    """torchvision's ImageNet checkpoint is not cached and could not be downloaded.

    The message starts with what the user can act on::

        resnet101-cd907fc2.pth is not in /root/.cache/torch/hub/checkpoints and could not be
        downloaded (no internet connection): put it there, or use --weights random

    Attributes:
        arch: the network, ``"vgg16"`` or ``"resnet101"``.
        file: the checkpoint's file name, e.g. ``"resnet101-cd907fc2.pth"``.
        folder: torch hub's checkpoint folder, where the file belongs (honours TORCH_HOME).
        reason: why it could not be downloaded, short and human: ``"no internet connection"``,
            ``"download interrupted"``, ``"server refused (HTTP 404)"``, …
        url: where torchvision publishes the file (not in the message).
    """

    def __init__(self, arch: str, path: Path, reason: str, url: str) -> None:
        self.arch = arch
        self.file = path.name
        self.folder = path.parent
        self.reason = reason
        self.url = url
        super().__init__(
            f"{shown(self.file, PATH_SHOWN)} is not in {shown(self.folder, PATH_SHOWN)} and could "
            f"not be downloaded ({reason}): put it there, or use --weights random"
        )

    @property
    def sentence(self) -> str:
        """The failure as one sentence for a banner, e.g. ``"ImageNet weights for vgg16 are not
        available (no internet connection): put vgg16-397923af.pth in /root/…/checkpoints."``"""
        return (
            f"ImageNet weights for {self.arch} are not available ({self.reason}): "
            f"put {shown(self.file, PATH_SHOWN)} in {shown(self.folder, PATH_SHOWN)}."
        )


@dataclass(frozen=True)
class WeightsInfo:
    """What a model's weights are.

    Attributes:
        kind: ``"imagenet"``, ``"random"`` or ``"file"``.
        detail: the ImageNet version, the seed, or the checkpoint's path.
        unwrapped: for a checkpoint, what was taken off to reach the network's state dict, in
            words (``"under 'state_dict', prefix 'model.' removed"``); None when nothing was.
        extras: values stored in the checkpoint next to the state dict that say how to use the
            network: class names (``LABEL_KEYS``) and preprocessing (``PREPROCESSING_KEYS``),
            as loaded (lists, dicts, numbers, strings or tensors).
    """

    kind: str
    detail: str
    unwrapped: str | None = None
    extras: Mapping[str, object] = field(default_factory=dict, compare=False)

    @property
    def trained(self) -> bool:
        """False for untrained (random) weights, which show nothing a trained network would."""
        return self.kind != "random"

    def __str__(self) -> str:
        if self.kind == "imagenet":
            return f"ImageNet ({self.detail})"
        if self.kind == "random":
            return f"random (untrained, {self.detail})"
        return self.detail


def imagenet_weights(arch: str) -> Any:
    """torchvision's weights entry for ``arch``: URL, categories, preprocessing transforms."""
    import torchvision.models

    enum_name, member = IMAGENET_WEIGHTS[arch].split(".")
    return getattr(torchvision.models, enum_name)[member]


def imagenet_checkpoint_path(arch: str) -> Path:
    """The ImageNet checkpoint of ``arch`` in torchvision's hub cache (honours TORCH_HOME)."""
    filename = os.path.basename(urlparse(imagenet_weights(arch).url).path)
    return Path(torch.hub.get_dir()) / "checkpoints" / filename


def load_weights(
    builder: Callable[..., nn.Module],
    weights: str | os.PathLike[str],
    *,
    progress: bool = True,
    num_classes: int | None = None,
    in_channels: int | None = None,
) -> nn.Module:
    """Build a network with ``builder`` and give it the weights ``weights`` names.

    ``builder(num_classes=, in_channels=)`` makes the network. For a checkpoint, both are read
    from it (the head's rows, the first convolution's input channels); for ``"random"`` they
    default to 1000 and 3; ImageNet weights have 1000 and 3.

    Returns the model in eval mode on the CPU, with ``weights_info``, ``num_classes`` and
    ``in_channels`` attributes.

    Raises:
        WeightsError: the weights could not be had or do not fit (one line).
        ValueError: ``num_classes`` or ``in_channels`` impossible, or not those of ImageNet.
    """
    if not isinstance(weights, (str, os.PathLike)):
        raise TypeError(f"weights must be 'imagenet', 'random' or a path, not {weights!r}")
    if num_classes is not None and num_classes < 1:
        raise ValueError(f"num_classes must be at least 1, not {num_classes}")
    if in_channels is not None and in_channels not in INPUT_CHANNELS:
        raise ValueError(f"in_channels must be 3 or 1, not {in_channels}")
    named = weights.lower() if isinstance(weights, str) else None
    if named == "random":
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(RANDOM_SEED)
            model = builder(num_classes=num_classes or 1000, in_channels=in_channels or 3)
        model.weights_info = WeightsInfo("random", f"seed {RANDOM_SEED}")
        return model.eval()
    with torch.device("meta"):
        model = builder()
    if named == "imagenet":
        if (num_classes or 1000) != 1000 or (in_channels or 3) != 3:
            raise ValueError("ImageNet weights have 1000 classes and 3 input channels")
        path = _imagenet_file(model.arch, progress)
        info = WeightsInfo("imagenet", IMAGENET_WEIGHTS[model.arch].split(".")[1])
        checkpoint = open_checkpoint(path, arch=model.arch)
    else:
        path = Path(weights)
        checkpoint = open_checkpoint(path, arch=model.arch)
        info = WeightsInfo("file", str(path), checkpoint.unwrapped, checkpoint.extras)
    source = shown(path, PATH_SHOWN)
    if checkpoint.unwrapped:
        source = f"{source} ({checkpoint.unwrapped})"
    classes, channels = checkpoint_shape(model.arch, checkpoint.state_dict, source)
    for asked, found, what in (
        (num_classes, classes, "classes"),
        (in_channels, channels, "input channels"),
    ):
        if asked is not None and asked != found:
            raise WeightsError(f"{source}: has {found} {what}, not {asked}")
    if (classes, channels) != (1000, 3):
        with torch.device("meta"):
            model = builder(num_classes=classes, in_channels=channels)
    apply_state_dict(model, checkpoint.state_dict, source=source)
    model.weights_info = info
    return model.eval()


@dataclass(frozen=True, eq=False)
class Checkpoint:
    """What a checkpoint file holds for fmviz.

    Attributes:
        state_dict: the network's tensors, by torchvision's parameter names.
        unwrapped: what was taken off to reach them, in words, or None.
        extras: label and preprocessing values stored next to them (see ``WeightsInfo``).
    """

    state_dict: dict[str, torch.Tensor]
    unwrapped: str | None = None
    extras: Mapping[str, object] = field(default_factory=dict)


def checkpoint_shape(arch: str, state: Mapping[str, torch.Tensor], source: str) -> tuple[int, int]:
    """``(classes, input channels)`` of the network ``state`` is for: the rows of the head's
    weight, and the second dimension of the first convolution's (1000 and 3 when absent: the
    fit check names the missing keys).

    Raises:
        WeightsError: an input channel count other than 3 or 1, or a head without rows.
    """
    head, first = state.get(HEAD_WEIGHT[arch]), state.get(FIRST_CONV[arch])
    classes = head.shape[0] if isinstance(head, torch.Tensor) and head.ndim == 2 else 1000
    channels = first.shape[1] if isinstance(first, torch.Tensor) and first.ndim == 4 else 3
    if channels not in INPUT_CHANNELS:
        raise WeightsError(
            f"{source}: its first convolution ({FIRST_CONV[arch]}) takes {channels} input "
            "channels; fmviz runs networks that take 3 (RGB) or 1 (grey-scale)"
        )
    if classes < 1:
        raise WeightsError(f"{source}: its head ({HEAD_WEIGHT[arch]}) has no classes")
    return classes, channels


def read_checkpoint(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """Read a state dict from a checkpoint file, safely: bare, nested or with wrapper prefixes."""
    return open_checkpoint(path).state_dict


def open_checkpoint(path: str | os.PathLike[str], *, arch: str | None = None) -> Checkpoint:
    """Read a checkpoint file safely: its state dict, and what is stored beside it.

    The state dict may be bare, or nested one level under a key of a dict holding other
    training state; its keys may carry a prefix (wrappers, training frameworks). With ``arch``,
    any prefix common to every key is removed when the rest fits that architecture; without,
    the prefixes in ``WRAPPER_PREFIXES``.

    Raises:
        WeightsError: not a readable checkpoint, or no state dict in it (one line).
    """
    path = Path(path)
    name = shown(path, PATH_SHOWN)
    loaded, metadata = _read_file(path, name)
    checkpoint = _find_state_dict(loaded, name, arch)
    if metadata:
        extras = {key: _decoded(value) for key, value in metadata.items() if key in EXTRA_KEYS}
        checkpoint = Checkpoint(
            checkpoint.state_dict, checkpoint.unwrapped, {**extras, **checkpoint.extras}
        )
    return checkpoint


def _read_file(path: Path, name: str) -> tuple[object, Mapping[str, str]]:
    """What a checkpoint file holds, read safely, and its text metadata (safetensors only)."""
    metadata: Mapping[str, str] = {}
    try:
        if not path.exists():
            raise WeightsError(
                f"{name}: no such file (weights are 'imagenet', 'random' or a checkpoint path)"
            )
        if path.is_dir():
            raise WeightsError(f"{name}: is a folder, not a checkpoint file")
        if path.stat().st_size == 0:
            raise WeightsError(f"{name}: the file is empty")
        kind = _sniff(path)
        if kind == "text":
            raise WeightsError(f"{name}: a text file, not a checkpoint")
        if kind == "safetensors" or path.suffix.lower() == ".safetensors":
            loaded: object = _read_safetensors(path, name)
            metadata = _safetensors_metadata(path)
        elif kind in ("zip", "pickle"):
            loaded = _read_pickle(path, name)
        else:
            raise WeightsError(f"{name}: not a checkpoint (neither a PyTorch file nor safetensors)")
    except (OSError, ValueError) as error:
        reason = getattr(error, "strerror", None) or _one_line(error)
        raise WeightsError(f"{name}: cannot be read ({reason})") from None
    return loaded, metadata


def architecture_of(path: str | os.PathLike[str]) -> str | None:
    """The architecture (``"vgg16"``, ``"resnet101"``) whose keys a checkpoint's state dict
    has, once unwrapped; None when it fits neither or cannot be read (building the network
    then says why)."""
    from models import MODEL_NAMES  # noqa: PLC0415 - models imports this module

    path = Path(path)
    try:
        loaded, _ = _read_file(path, shown(path, PATH_SHOWN))
        for arch in MODEL_NAMES:
            if _fits(_find_state_dict(loaded, "", arch).state_dict, arch):
                return arch
    except WeightsError:
        return None
    return None


def apply_state_dict(model: nn.Module, state_dict: Mapping[str, torch.Tensor], source: str) -> None:
    """Load ``state_dict`` into ``model`` (built on the meta device) after checking that it fits.

    Every tensor becomes a dense CPU tensor of the model's dtype with storage of its own, so
    weights that a checkpoint shares between layers are not tied in the model.
    """
    expected = model.state_dict()
    state = dict(state_dict)
    # Checkpoints saved before BatchNorm counted batches lack this buffer; eval mode never reads it.
    for key, tensor in expected.items():
        if key.endswith("num_batches_tracked") and key not in state:
            state[key] = torch.zeros((), dtype=tensor.dtype)
    _check_fit(model, expected, state, source)
    storages: set[int] = set()
    for key, tensor in state.items():
        converted = tensor.to(dtype=expected[key].dtype).contiguous()
        storage = converted.untyped_storage()
        if storage.data_ptr() in storages or storage.nbytes() != converted.nbytes:
            converted = converted.clone()
        storages.add(converted.untyped_storage().data_ptr())
        state[key] = converted
    model.load_state_dict(state, strict=True, assign=True)


def _check_fit(
    model: nn.Module,
    expected: Mapping[str, torch.Tensor],
    state: Mapping[str, torch.Tensor],
    source: str,
) -> None:
    arch = getattr(model, "arch", type(model).__name__)
    not_tensors = [shown(k) for k, v in state.items() if not isinstance(v, torch.Tensor)]
    if not_tensors:
        raise WeightsError(f"{source}: not a state dict: {_first(not_tensors)} are not tensors")
    missing = [shown(key) for key in expected if key not in state]
    unexpected = [shown(key) for key in state if key not in expected]
    mismatched = [
        f"{key} {tuple(state[key].shape)} vs {tuple(expected[key].shape)} in {arch}"
        for key in expected
        if key in state and state[key].shape != expected[key].shape
    ]
    problems = []
    if missing:
        problems.append(f"missing {_first(missing)}")
    if unexpected:
        problems.append(f"unexpected {_first(unexpected)}")
    if mismatched:
        problems.append(f"shape mismatch {_first(mismatched)}")
    if problems:
        raise WeightsError(f"{source}: does not fit {arch}: " + "; ".join(problems))
    unusable = [
        f"{key} ({problem})"
        for key, target in expected.items()
        if (problem := _tensor_problem(state[key], target))
    ]
    if unusable:
        raise WeightsError(f"{source}: unusable weights: {_first(unusable)}")


def _tensor_problem(tensor: torch.Tensor, target: torch.Tensor) -> str | None:
    """Why ``tensor`` cannot stand in for ``target``, or None when it can."""
    if tensor.layout is not torch.strided:
        return f"{_torch_name(tensor.layout)} tensor"
    if tensor.device.type != "cpu":
        return f"on the {tensor.device.type} device, without data"
    if tensor.is_quantized:
        return "quantized"
    if target.is_floating_point():
        if not tensor.is_floating_point():
            return f"{_torch_name(tensor.dtype)}, not floating point"
        # A sum is non-finite whenever an element is, and costs no copy (isfinite() makes two);
        # the exact test runs only then, in case the sum merely overflowed.
        if not torch.isfinite(tensor.sum()) and not bool(torch.isfinite(tensor).all()):
            return "holds NaN or infinite values"
    elif tensor.is_floating_point() or tensor.is_complex():
        return f"{_torch_name(tensor.dtype)}, not an integer"
    return None


def _torch_name(value: object) -> str:
    """``torch.float16`` → ``float16``."""
    return str(value).removeprefix("torch.")


def shown(name: object, limit: int = 80) -> str:
    """A file name or key fit for a one-line message: control characters escaped, cut short."""
    text = str(name)
    if not text.isprintable():
        text = repr(text)[1:-1]
    if len(text) <= limit:
        return text
    half = (limit - 1) // 2
    return f"{text[:half]}…{text[-half:]}"


def _first(items: list[str]) -> str:
    named = ", ".join(items[:MAX_KEYS_NAMED])
    more = len(items) - MAX_KEYS_NAMED
    return named + (f" and {more} more" if more > 0 else "")


def _read_safetensors(path: Path, name: str) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError  # noqa: PLC0415 - only needed for such files
    from safetensors.torch import load_file  # noqa: PLC0415

    try:
        return load_file(path, device="cpu")
    except (SafetensorError, OSError, ValueError, RuntimeError) as error:
        raise WeightsError(
            f"{name}: not a readable safetensors file ({_one_line(error)})"
        ) from None


def _read_pickle(path: Path, name: str) -> object:
    try:
        # weights_only=True admits tensors and plain containers only; never retried without.
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - any failure of an untrusted file is a refusal
        unsafe = UNSAFE_GLOBAL.search(str(error))
        if unsafe:
            raise WeightsError(
                f"{name}: refused: it holds Python objects ({shown(unsafe.group(1))}) that "
                "could run code when loaded; only tensors are loaded (save model.state_dict() "
                "instead)"
            ) from None
        raise WeightsError(
            f"{name}: damaged or not a PyTorch checkpoint ({_one_line(error)})"
        ) from None


def _sniff(path: Path) -> str:
    """The file's format from its first bytes.

    ``"zip"`` (torch.save), ``"pickle"`` (torch.save's legacy format), ``"safetensors"``
    (an 8-byte header length, then a JSON header), ``"text"`` or ``"unknown"``.
    """
    with path.open("rb") as file:
        head = file.read(512)
    if head.startswith(b"PK\x03\x04"):
        return "zip"
    if head.startswith(b"\x80"):
        return "pickle"
    if head[8:9] == b"{":
        return "safetensors"
    # The 512th byte may cut a character in two, hence the strip of one replacement character.
    text = head.decode("utf-8", errors="replace").removesuffix("\ufffd")
    if all((char.isprintable() or char.isspace()) and char != "\ufffd" for char in text):
        return "text"
    return "unknown"


def _one_line(error: BaseException) -> str:
    """The telling line of an error message, kept short (torch's are long and multi-line)."""
    lines = [
        line.strip()
        for line in str(error).splitlines()
        if line.strip() and not line.strip().startswith(BOILERPLATE)
    ]
    return shown(lines[0] if lines else type(error).__name__, limit=200)


EXTRA_KEYS = (*LABEL_KEYS, *PREPROCESSING_KEYS)


def _unwrap(loaded: object, name: str) -> dict[str, torch.Tensor]:
    """The state dict inside ``loaded``, with wrapper prefixes (DataParallel, compile) removed."""
    return _find_state_dict(loaded, name, None).state_dict


def _find_state_dict(loaded: object, name: str, arch: str | None) -> Checkpoint:
    """The state dict inside ``loaded`` and what was stored beside it.

    The state dict is ``loaded`` itself when its values are tensors (other values beside them
    are kept as extras), else the mapping of tensors under one of its keys (``NESTED_KEYS``
    first, then any other, the first that fits ``arch``).
    """
    if not isinstance(loaded, Mapping):
        raise WeightsError(f"{name}: holds a {type(loaded).__name__}, not a state dict")
    if not loaded:
        raise WeightsError(f"{name}: the state dict is empty")
    nested = [
        key
        for key, value in loaded.items()
        if isinstance(value, Mapping) and value and _is_tensor_mapping(value)
    ]
    nested.sort(key=lambda key: NESTED_KEYS.index(key) if key in NESTED_KEYS else len(NESTED_KEYS))
    tensors = {key: value for key, value in loaded.items() if isinstance(value, torch.Tensor)}
    if nested and len(tensors) < len(loaded) / 2:
        tried = [(key, _fitted_keys(dict(loaded[key]), arch)) for key in nested]
        key, (state, prefix) = next(
            ((key, fit) for key, fit in tried if arch is None or _fits(fit[0], arch)), tried[0]
        )
        loaded_state: Mapping[str, object] = loaded[key]
        where = f"under {shown(key)!r}"
        extras = _extras(loaded)
    else:
        if not all(isinstance(key, str) for key in loaded):
            raise WeightsError(f"{name}: not a state dict (its keys are not all names)")
        beside = {key: value for key, value in loaded.items() if key in EXTRA_KEYS}
        loaded_state = {key: value for key, value in loaded.items() if key not in beside}
        state, prefix = _fitted_keys(dict(loaded_state), arch)
        where, extras = None, _extras(loaded)
    if not state:
        raise WeightsError(f"{name}: the state dict is empty")
    left_out = [key for key in WRAPPER_KEYS if prefix and key in loaded_state and key not in state]
    said = [
        part
        for part in (
            where,
            prefix and f"prefix {prefix!r} removed",
            left_out and f"{', '.join(map(repr, left_out))} left out",
        )
        if part
    ]
    return Checkpoint(state, ", ".join(said) or None, extras)


def _is_tensor_mapping(value: Mapping[object, object]) -> bool:
    """True when ``value`` looks like a state dict: names to tensors (an optimizer's state,
    by parameter number, and hyper-parameters do not)."""
    return all(isinstance(key, str) for key in value) and all(
        isinstance(item, torch.Tensor) for item in value.values()
    )


def _extras(loaded: Mapping[str, object]) -> dict[str, object]:
    """Label and preprocessing values stored in ``loaded`` or one level down in its settings."""
    found: dict[str, object] = {}
    for key in SETTINGS_KEYS:
        settings = loaded.get(key)
        if isinstance(settings, Mapping):
            found.update({k: v for k, v in settings.items() if k in EXTRA_KEYS})
    found.update({k: v for k, v in loaded.items() if k in EXTRA_KEYS})
    return found


def _fitted_keys(
    state: dict[str, torch.Tensor], arch: str | None
) -> tuple[dict[str, torch.Tensor], str | None]:
    """``state`` with the prefix common to every key removed, and that prefix (None if none).

    With ``arch``: the shortest common prefix (whole dotted names) whose removal leaves the
    architecture's keys; when none does, the one leaving the most of them, for the message.
    Without: the prefixes in ``WRAPPER_PREFIXES``.
    """
    if arch is None:
        stripped = strip_wrapper_prefixes(state)
        return stripped, _removed_prefix(state, stripped)
    if _fits(state, arch):
        return state, None
    expected = _expected_keys(arch)
    counted = {key: value for key, value in state.items() if key not in WRAPPER_KEYS}
    parts = [key.split(".") for key in counted]
    depth = min((len(p) for p in parts), default=0) - 1
    best, best_prefix, best_score = state, None, len(expected & set(state))
    for cut in range(1, depth + 1):
        heads = {tuple(p[:cut]) for p in parts}
        if len(heads) != 1:
            break
        prefix = ".".join(next(iter(heads))) + "."
        stripped = {key[len(prefix) :]: value for key, value in counted.items()}
        if _fits(stripped, arch):
            return stripped, prefix
        score = len(expected & set(stripped))
        if score > best_score:
            best, best_prefix, best_score = stripped, prefix, score
    return best, best_prefix


def _removed_prefix(before: Mapping[str, object], after: Mapping[str, object]) -> str | None:
    first, stripped = next(iter(before)), next(iter(after))
    return first[: len(first) - len(stripped)] or None


def _fits(state: Mapping[str, object], arch: str) -> bool:
    """True when ``state`` has exactly ``arch``'s keys (batch counters may be missing)."""
    keys, expected = set(state), _expected_keys(arch)
    return keys <= expected and all(
        key in keys for key in expected if not key.endswith("num_batches_tracked")
    )


_EXPECTED: dict[str, frozenset[str]] = {}


def _expected_keys(arch: str) -> frozenset[str]:
    """The state dict keys of ``arch`` (the same for any head size and input channels)."""
    if arch not in _EXPECTED:
        from models import _BUILDERS  # noqa: PLC0415 - models imports this module

        with torch.device("meta"):
            _EXPECTED[arch] = frozenset(_BUILDERS[arch]().state_dict())
    return _EXPECTED[arch]


def _safetensors_metadata(path: Path) -> Mapping[str, str]:
    """The text metadata of a safetensors file (where labels and preprocessing may be)."""
    from safetensors import safe_open  # noqa: PLC0415

    try:
        with safe_open(path, framework="pt") as file:
            return file.metadata() or {}
    except Exception:  # noqa: BLE001 - the tensors were read; metadata is optional
        return {}


def _decoded(text: str) -> object:
    """A metadata value: JSON when it is JSON (lists, objects, numbers), else the text."""
    import json  # noqa: PLC0415

    try:
        return json.loads(text)
    except ValueError:
        return text


def strip_wrapper_prefixes(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``state`` with the prefixes that wrappers add to every key removed, in any order and nesting.

    ``DataParallel`` adds ``module.``, ``torch.compile`` adds ``_orig_mod.``; a model wrapped in
    both, or twice, has two or more of them, in the order it was wrapped (the outer wrapper's
    first). A prefix is removed only while every key has it and something after it: on some keys
    only, it is part of their names. Adding a wrapper is one entry in ``WRAPPER_PREFIXES``.
    """
    state = dict(state)
    while state:
        prefix = next(
            (
                prefix
                for prefix in WRAPPER_PREFIXES
                if all(key.startswith(prefix) and len(key) > len(prefix) for key in state)
            ),
            None,
        )
        if prefix is None:
            break
        state = {key[len(prefix) :]: value for key, value in state.items()}
    return state


def _imagenet_file(arch: str, progress: bool) -> Path:
    """The cached ImageNet checkpoint of ``arch``, downloaded through torch.hub when missing.

    Raises:
        ImageNetUnavailable: not cached, and the download failed (the reason said in words).
    """
    path = imagenet_checkpoint_path(arch)
    if path.is_file():
        return path
    url = imagenet_weights(arch).url
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ImageNetUnavailable(
            arch, path, f"cannot create the folder ({_os_words(error)})", url
        ) from None
    try:
        _reach(url)
    except OSError as error:
        raise ImageNetUnavailable(arch, path, _connect_reason(error), url) from None
    try:
        torch.hub.download_url_to_file(
            url, str(path), hash_prefix=_hash_prefix(path), progress=progress
        )
    except (OSError, RuntimeError, http.client.HTTPException) as error:
        raise ImageNetUnavailable(arch, path, _download_reason(error), url) from None
    return path


def download(url: str, path: Path, *, progress: bool = True) -> None:
    """Download ``url`` to ``path`` with torch.hub (progress bar, hash check, atomic rename).

    Fails within seconds when the host cannot be reached, rather than hanging.

    Raises:
        OSError, RuntimeError, http.client.HTTPException: as torch.hub and urllib raise them.
    """
    _reach(url)
    torch.hub.download_url_to_file(
        url, str(path), hash_prefix=_hash_prefix(path), progress=progress
    )


def _reach(url: str) -> None:
    """Connect to ``url``'s host and hang up: fails within seconds when offline.

    Through a proxy only the proxy could be tried, so nothing is tried then.
    """
    if urllib.request.getproxies():
        return
    parts = urlparse(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    with socket.create_connection((parts.hostname, port), timeout=CONNECT_TIMEOUT_S):
        pass


def _hash_prefix(path: Path) -> str | None:
    """The SHA-256 prefix torchvision puts in its file names (``resnet101-cd907fc2.pth``)."""
    match = torch.hub.HASH_REGEX.search(path.name)
    return match.group(1) if match else None


# Connecting: errors that mean the machine is offline, or cannot resolve or reach the host.
OFFLINE_ERRNOS = frozenset(
    {errno.ENETUNREACH, errno.ENETDOWN, errno.EHOSTUNREACH, errno.EHOSTDOWN, errno.ETIMEDOUT}
)
NO_INTERNET = "no internet connection"


def _connect_reason(error: OSError) -> str:
    """Why the host could not be reached, in words."""
    if isinstance(error, ConnectionRefusedError):
        return "server refused the connection"
    if isinstance(error, (socket.gaierror, TimeoutError)) or error.errno in OFFLINE_ERRNOS:
        return NO_INTERNET
    return _os_words(error)


def _download_reason(error: BaseException) -> str:
    """Why a download failed, in words: never errno numbers, tracebacks or URLs."""
    wrapped = getattr(error, "reason", None)  # urllib wraps the socket's or SSL's error
    if isinstance(error, urllib.error.URLError) and isinstance(wrapped, BaseException):
        return _download_reason(wrapped)
    return _network_words(error) or _local_words(error) or _one_line(error)


def _network_words(error: BaseException) -> str | None:
    """What went wrong between here and the server, or None when it was nothing of that kind."""
    number = getattr(error, "errno", None)
    if isinstance(error, urllib.error.HTTPError):
        return f"server refused (HTTP {error.code})"
    if isinstance(error, ssl.SSLCertVerificationError):
        return "secure connection failed (certificate not trusted)"
    if isinstance(error, ssl.SSLError):
        return "secure connection failed"
    if isinstance(error, socket.gaierror) or number in OFFLINE_ERRNOS - {errno.ETIMEDOUT}:
        return NO_INTERNET
    if isinstance(error, TimeoutError) or number == errno.ETIMEDOUT:
        return "download timed out"
    if isinstance(error, ConnectionRefusedError):
        return "server refused the connection"
    if isinstance(error, (ConnectionError, http.client.HTTPException)):
        return "download interrupted"  # reset, aborted, closed early, an incomplete read
    if isinstance(error, urllib.error.URLError):
        return shown(error.reason, 80)
    return None


def _local_words(error: BaseException) -> str | None:
    """What went wrong with the file here, or None when it was nothing of that kind."""
    if isinstance(error, RuntimeError) and "invalid hash value" in str(error):
        return "download damaged (checksum mismatch)"
    if isinstance(error, PermissionError):
        return "cannot write there (permission denied)"
    if isinstance(error, OSError) and error.errno == errno.ENOSPC:
        return "no space left on the disk"
    if isinstance(error, OSError) and error.errno == errno.EROFS:
        return "cannot write there (read-only file system)"
    if isinstance(error, OSError) and error.strerror:
        return _os_words(error)
    return None


def _os_words(error: OSError) -> str:
    """An operating-system error's own words, without its number: ``"permission denied"``."""
    words = error.strerror or str(error) or type(error).__name__
    return shown(words[:1].lower() + words[1:], 80)
