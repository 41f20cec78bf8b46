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
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import torch
from torch import nn

RANDOM_SEED = 0
NESTED_KEYS = ("state_dict", "model", "model_state_dict")
WRAPPER_PREFIXES = ("module.", "_orig_mod.")
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
    """What a model's weights are: ``kind`` is ``"imagenet"``, ``"random"`` or ``"file"``."""

    kind: str
    detail: str

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
    builder: Callable[[], nn.Module], weights: str | os.PathLike[str], *, progress: bool = True
) -> nn.Module:
    """Build a network with ``builder`` and give it the weights ``weights`` names.

    Returns the model in eval mode on the CPU, with a ``weights_info`` attribute.
    """
    if not isinstance(weights, (str, os.PathLike)):
        raise TypeError(f"weights must be 'imagenet', 'random' or a path, not {weights!r}")
    if isinstance(weights, str) and weights.lower() == "random":
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(RANDOM_SEED)
            model = builder()
        info = WeightsInfo("random", f"seed {RANDOM_SEED}")
    else:
        with torch.device("meta"):
            model = builder()
        if isinstance(weights, str) and weights.lower() == "imagenet":
            path = _imagenet_file(model.arch, progress)
            info = WeightsInfo("imagenet", IMAGENET_WEIGHTS[model.arch].split(".")[1])
        else:
            path = Path(weights)
            info = WeightsInfo("file", str(path))
        apply_state_dict(model, read_checkpoint(path), source=shown(path, PATH_SHOWN))
    model.weights_info = info
    return model.eval()


def read_checkpoint(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """Read a state dict from a checkpoint file, safely: bare, nested or with wrapper prefixes."""
    path = Path(path)
    name = shown(path, PATH_SHOWN)
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
        elif kind in ("zip", "pickle"):
            loaded = _read_pickle(path, name)
        else:
            raise WeightsError(f"{name}: not a checkpoint (neither a PyTorch file nor safetensors)")
    except (OSError, ValueError) as error:
        reason = getattr(error, "strerror", None) or _one_line(error)
        raise WeightsError(f"{name}: cannot be read ({reason})") from None
    return _unwrap(loaded, name)


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


def _unwrap(loaded: object, name: str) -> dict[str, torch.Tensor]:
    """The state dict inside ``loaded``, with wrapper prefixes (DataParallel, compile) removed."""
    if not isinstance(loaded, Mapping):
        raise WeightsError(f"{name}: holds a {type(loaded).__name__}, not a state dict")
    for key in NESTED_KEYS:
        if isinstance(loaded.get(key), Mapping):
            loaded = loaded[key]
            break
    if not loaded:
        raise WeightsError(f"{name}: the state dict is empty")
    if not all(isinstance(key, str) for key in loaded):
        raise WeightsError(f"{name}: not a state dict (its keys are not all names)")
    return strip_wrapper_prefixes(dict(loaded))


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
