"""Every weights source: random, ImageNet (cached, downloaded, offline), files, and refusals."""

from __future__ import annotations

import errno
import gc
import http.client
import os
import pickle
import random
import re
import socket
import ssl
import urllib.error
import zipfile
from collections.abc import Callable, Iterator
from email.message import Message
from pathlib import Path

import pytest
import safetensors.torch
import torch
from torch import nn

import models.weights
from models import WeightsError, build_model, imagenet_weights
from models.resnet import ResNet101
from models.weights import (
    ImageNetUnavailable,
    apply_state_dict,
    imagenet_checkpoint_path,
    read_checkpoint,
    strip_wrapper_prefixes,
)

IMAGENET_FILES = {"vgg16": "vgg16-397923af.pth", "resnet101": "resnet101-cd907fc2.pth"}


@pytest.fixture(scope="module")
def trained_like() -> dict[str, torch.Tensor]:
    """A ResNet101 state dict unlike our seeded random init (torchvision's init, seed 1)."""
    import torchvision

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(1)
        return torchvision.models.resnet101().state_dict()


@pytest.fixture(scope="module")
def probe() -> torch.Tensor:
    return torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(3))


@pytest.fixture(scope="module")
def trained_logits(trained_like: dict[str, torch.Tensor], probe: torch.Tensor) -> torch.Tensor:
    """torchvision's ResNet101 holding ``trained_like``, on ``probe``: what every checkpoint
    layout of it must give."""
    return reference_logits(trained_like, probe)


@pytest.fixture
def torch_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "torch-home"
    monkeypatch.setenv("TORCH_HOME", str(home))
    return home


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Any connection attempt fails at once, as offline; the attempts are recorded."""
    attempts: list[str] = []

    def refuse(address: tuple[str, int], *args: object, **kwargs: object) -> socket.socket:
        attempts.append(address[0])
        raise OSError(101, "Network is unreachable")

    def no_download(*args: object, **kwargs: object) -> None:
        raise AssertionError("torch.hub download attempted")

    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(torch.hub, "download_url_to_file", no_download)
    return attempts


def logits(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.inference_mode():
        return model(x)


def reference_logits(state: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    import torchvision

    reference = torchvision.models.resnet101()
    reference.load_state_dict(state)
    return logits(reference.eval(), x)


def refusal(arch: str, weights: str | Path, file: Path | None = None) -> str:
    """Why ``weights`` are refused for ``arch``: one line that names the file (``weights``)."""
    with pytest.raises(WeightsError) as error:
        build_model(arch, weights)
    message = str(error.value)
    assert "\n" not in message
    assert str(file or weights) in message
    return message


# --- random ---------------------------------------------------------------------------------


def test_random_weights_are_the_same_every_build(probe: torch.Tensor) -> None:
    first, second = build_model("resnet101", "random"), build_model("resnet101", "random")
    assert all(
        torch.equal(a, b)
        for a, b in zip(first.state_dict().values(), second.state_dict().values(), strict=True)
    )
    assert torch.equal(logits(first, probe), logits(second, probe))
    assert not first.weights_info.trained
    assert "untrained" in str(first.weights_info)


def test_random_weights_leave_the_global_generator_alone() -> None:
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    build_model("resnet101", "random")
    assert torch.equal(torch.rand(3), expected)


# --- checkpoint files -------------------------------------------------------------------------

CHECKPOINT_LAYOUTS: dict[str, Callable[[dict[str, torch.Tensor]], object]] = {
    "bare": lambda state: state,
    "nested-state_dict": lambda state: {"state_dict": state, "epoch": 3},
    "nested-model": lambda state: {"model": state, "optimizer": {}},
    "dataparallel-prefix": lambda state: {f"module.{key}": value for key, value in state.items()},
    "compiled-prefix": lambda state: {f"_orig_mod.{key}": value for key, value in state.items()},
}


@pytest.mark.parametrize("layout", sorted(CHECKPOINT_LAYOUTS))
@pytest.mark.parametrize("suffix", [".pth", ".pt"])
def test_pth_checkpoints_load(
    layout: str,
    suffix: str,
    *,
    tmp_path: Path,
    trained_like: dict[str, torch.Tensor],
    probe: torch.Tensor,
    trained_logits: torch.Tensor,
) -> None:
    path = tmp_path / f"weights{suffix}"
    torch.save(CHECKPOINT_LAYOUTS[layout](trained_like), path)
    model = build_model("resnet101", path)
    assert torch.equal(logits(model, probe), trained_logits)
    assert model.weights_info.kind == "file"
    assert str(path) in str(model.weights_info)


def test_safetensors_checkpoint_loads(
    tmp_path: Path,
    trained_like: dict[str, torch.Tensor],
    probe: torch.Tensor,
    trained_logits: torch.Tensor,
) -> None:
    path = tmp_path / "weights.safetensors"
    safetensors.torch.save_file(trained_like, path)
    model = build_model("resnet101", str(path))
    assert torch.equal(logits(model, probe), trained_logits)


def test_safetensors_is_recognised_without_its_suffix(
    tmp_path: Path, trained_like: dict[str, torch.Tensor]
) -> None:
    path = tmp_path / "weights.data"
    safetensors.torch.save_file(trained_like, path)
    assert read_checkpoint(path).keys() == trained_like.keys()


def test_half_precision_checkpoint_loads_as_float32(
    tmp_path: Path, trained_like: dict[str, torch.Tensor]
) -> None:
    path = tmp_path / "half.pth"
    torch.save(
        {
            key: value.half() if value.is_floating_point() else value
            for key, value in trained_like.items()
        },
        path,
    )
    model = build_model("resnet101", path)
    assert {p.dtype for p in model.parameters()} == {torch.float32}
    torch.testing.assert_close(model.fc.weight, trained_like["fc.weight"], rtol=1e-3, atol=1e-4)


def test_checkpoint_without_batch_counters_loads(
    tmp_path: Path, trained_like: dict[str, torch.Tensor]
) -> None:
    path = tmp_path / "old.pth"
    torch.save(
        {k: v for k, v in trained_like.items() if not k.endswith("num_batches_tracked")}, path
    )
    model = build_model("resnet101", path)
    assert all(not buffer.is_meta for buffer in model.buffers())
    assert all(not parameter.is_meta for parameter in model.parameters())


def test_loading_never_unpickles_unsafely(
    tmp_path: Path, trained_like: dict[str, torch.Tensor], monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[dict[str, object]] = []
    real_load = torch.load

    def spy(*args: object, **kwargs: object) -> object:
        calls.append(kwargs)
        return real_load(*args, **kwargs)

    monkeypatch.setattr(torch, "load", spy)
    path = tmp_path / "weights.pth"
    torch.save(trained_like, path)
    build_model("resnet101", path)
    (tmp_path / "broken.pth").write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(WeightsError):
        build_model("resnet101", tmp_path / "broken.pth")
    assert calls
    assert all(call.get("weights_only") is True for call in calls)


def test_the_source_never_asks_for_an_unsafe_load() -> None:
    source = "".join(path.read_text() for path in Path(models.weights.__file__).parent.glob("*.py"))
    assert not re.search(r"weights_only\s*=\s*False", source)
    assert "pickle.load" not in source


# --- wrapper prefixes ------------------------------------------------------------------------

SMALL_STATE = {"conv1.weight": torch.zeros(2), "fc.bias": torch.ones(3)}


@pytest.mark.parametrize(
    "prefix",
    [
        "",
        "module.",
        "_orig_mod.",
        "module._orig_mod.",  # torch.compile first, then DataParallel
        "_orig_mod.module.",  # DataParallel first, then torch.compile
        "module.module.",  # DataParallel of DataParallel
        "_orig_mod._orig_mod.",
        "_orig_mod.module._orig_mod.module.",
    ],
)
def test_wrapper_prefixes_are_stripped_in_any_order_and_nesting(prefix: str) -> None:
    wrapped = {prefix + key: value for key, value in SMALL_STATE.items()}
    assert strip_wrapper_prefixes(wrapped) == SMALL_STATE
    # And through the reader, nested under "state_dict" as training scripts save them.
    assert models.weights._unwrap({"state_dict": wrapped}, "ckpt.pth") == SMALL_STATE


def test_a_checkpoint_of_a_compiled_dataparallel_model_loads(
    tmp_path: Path,
    trained_like: dict[str, torch.Tensor],
    probe: torch.Tensor,
    trained_logits: torch.Tensor,
) -> None:
    """DataParallel first, then torch.compile: every key begins ``_orig_mod.module.``."""
    path = tmp_path / "compiled-dataparallel.pth"
    torch.save({f"_orig_mod.module.{key}": value for key, value in trained_like.items()}, path)
    model = build_model("resnet101", path)
    assert torch.equal(logits(model, probe), trained_logits)


@pytest.mark.parametrize(
    ("keys", "expected"),
    [
        # A prefix on some keys only is part of their names, not a wrapper's.
        (["module.conv1.weight", "fc.bias"], ["module.conv1.weight", "fc.bias"]),
        (["_orig_mod.conv1.weight", "fc.bias"], ["_orig_mod.conv1.weight", "fc.bias"]),
        # Common wrappers are stripped until one is not on every key.
        (
            ["_orig_mod.module.conv1.weight", "_orig_mod.fc.bias"],
            ["module.conv1.weight", "fc.bias"],
        ),
        # A name that merely begins like a prefix is left alone.
        (["modules.conv1.weight", "modules.fc.bias"], ["modules.conv1.weight", "modules.fc.bias"]),
        # A key that is nothing but the prefix keeps it: stripping would leave no name.
        (["module.", "module.fc.bias"], ["module.", "module.fc.bias"]),
    ],
)
def test_a_prefix_on_some_keys_only_is_kept(keys: list[str], expected: list[str]) -> None:
    state = {key: torch.zeros(1) for key in keys}
    assert list(strip_wrapper_prefixes(state)) == expected


def test_wrapper_prefixes_are_one_list() -> None:
    """Adding a wrapper (e.g. ``model.``) is one entry in WRAPPER_PREFIXES."""
    assert set(models.weights.WRAPPER_PREFIXES) >= {"module.", "_orig_mod."}
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(
            models.weights, "WRAPPER_PREFIXES", (*models.weights.WRAPPER_PREFIXES, "net.")
        )
        bias = torch.zeros(1)
        assert strip_wrapper_prefixes({"net.module.fc.bias": bias}) == {"fc.bias": bias}


# --- refusals -------------------------------------------------------------------------------


class Payload:
    """Unpickling this runs ``code``: what a malicious checkpoint does."""

    def __init__(self, code: str) -> None:
        self.code = code

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (exec, (self.code,))


class ShellPayload:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, (f"touch '{self.marker}'",))


def _malicious_files(directory: Path, marker: Path) -> Iterator[Path]:
    exec_payload = Payload(f"open({str(marker)!r}, 'w').close()")
    zipped = directory / "evil-zip.pth"
    torch.save({"conv1.weight": exec_payload}, zipped)
    yield zipped
    shell = directory / "evil-shell.pt"
    torch.save({"state_dict": {"fc.bias": ShellPayload(marker)}}, shell)
    yield shell
    for protocol in (2, pickle.HIGHEST_PROTOCOL):
        raw = directory / f"evil-raw-{protocol}.pth"
        raw.write_bytes(pickle.dumps({"fc.weight": exec_payload}, protocol=protocol))
        yield raw
    whole = directory / "evil-whole.ckpt"
    torch.save(exec_payload, whole)
    yield whole


def test_malicious_pickle_payloads_are_live(tmp_path: Path) -> None:
    """The payloads below really run when unpickled unsafely, so the next test means something."""
    marker = tmp_path / "ran"
    pickle.loads(pickle.dumps(Payload(f"open({str(marker)!r}, 'w').close()")))
    assert marker.exists()


def test_malicious_pickles_never_run_and_are_refused(tmp_path: Path) -> None:
    marker = tmp_path / "payload-ran"
    for path in _malicious_files(tmp_path, marker):
        message = refusal("resnet101", path)
        assert re.search(r"refused: it holds Python objects \((exec|posix\.system)\)", message) or (
            path.name == f"evil-raw-{pickle.HIGHEST_PROTOCOL}.pth"
            and "not a PyTorch checkpoint" in message
        ), message
        assert not marker.exists(), f"{path.name} ran its payload"


# Fixed noise that looks like none of the formats (not zip, not pickle, not safetensors).
NOISE = random.Random(0).randbytes(4096)  # noqa: S311
assert NOISE[:2] != b"PK"
assert NOISE[0] != 0x80
assert NOISE[8:9] != b"{"


def _truncated(tmp_path: Path, state: dict[str, torch.Tensor]) -> Path:
    path = tmp_path / "truncated.pth"
    torch.save(state, path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


BROKEN_FILES: dict[str, Callable[[Path], Path]] = {
    "empty": lambda d: _write(d / "empty.pth", b""),
    "text": lambda d: _write(d / "notes.pth", b"these are not the weights you are looking for\n"),
    "random-bytes": lambda d: _write(d / "noise.pth", NOISE),
    "zip-but-not-torch": lambda d: _zip(d / "archive.pt"),
    "corrupt-safetensors": lambda d: _write(
        d / "bad.safetensors", (10**9).to_bytes(8, "little") + b"{}"
    ),
    "json-safetensors-header-lies": lambda d: _write(
        d / "lies.safetensors",
        (60).to_bytes(8, "little")
        + b'{"fc.bias":{"dtype":"F32","shape":[1000],"data_offsets":[0,4000]}}'[:60],
    ),
    "a-tensor-not-a-dict": lambda d: _save(d / "tensor.pth", torch.zeros(3)),
    "a-list": lambda d: _save(d / "list.pth", [torch.zeros(3)]),
    "empty-dict": lambda d: _save(d / "nothing.pth", {}),
    "folder": lambda d: _mkdir(d / "a-folder.pth"),
    "missing": lambda d: d / "no-such-file.pth",
}


def _zip(path: Path) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("readme.txt", "not a checkpoint")
    return path


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _save(path: Path, obj: object) -> Path:
    torch.save(obj, path)
    return path


def _mkdir(path: Path) -> Path:
    path.mkdir()
    return path


@pytest.mark.parametrize("kind", sorted(BROKEN_FILES))
def test_broken_files_are_refused_in_one_line(kind: str, tmp_path: Path) -> None:
    path = BROKEN_FILES[kind](tmp_path)
    refusal("vgg16", path)


def test_truncated_checkpoint_is_refused(
    tmp_path: Path, trained_like: dict[str, torch.Tensor]
) -> None:
    path = _truncated(tmp_path, trained_like)
    assert "damaged or not a PyTorch checkpoint" in refusal("resnet101", path)


def test_wrong_shape_names_the_key_and_both_shapes(
    tmp_path: Path, trained_like: dict[str, torch.Tensor]
) -> None:
    """A head of any size loads (its rows are the classes); what disagrees with it does not."""
    state = dict(
        trained_like,
        **{"fc.weight": torch.zeros(10, 2048), "fc.bias": torch.zeros(7)},
        **{"layer1.0.conv1.weight": torch.zeros(64, 32, 1, 1)},
    )
    path = tmp_path / "ten-classes.pth"
    torch.save(state, path)
    message = refusal("resnet101", path)
    assert "layer1.0.conv1.weight (64, 32, 1, 1) vs (64, 64, 1, 1)" in message
    assert "fc.bias (7,) vs (10,)" in message


def test_wrong_architecture_names_missing_and_unexpected_keys(
    tmp_path: Path, trained_like: dict[str, torch.Tensor]
) -> None:
    path = tmp_path / "resnet.pth"
    torch.save(trained_like, path)
    message = refusal("vgg16", path)
    assert "missing features.0.weight, features.0.bias, features.2.weight and" in message
    assert "unexpected conv1.weight, bn1.weight, bn1.bias and" in message


def test_extra_keys_are_refused(tmp_path: Path, trained_like: dict[str, torch.Tensor]) -> None:
    path = tmp_path / "extra.pth"
    torch.save(dict(trained_like, **{"head.weight": torch.zeros(2)}), path)
    with pytest.raises(WeightsError, match=r"unexpected head\.weight"):
        build_model("resnet101", path)


# --- imagenet --------------------------------------------------------------------------------


def test_imagenet_entries_are_torchvisions_best() -> None:
    assert str(imagenet_weights("vgg16")) == "VGG16_Weights.IMAGENET1K_V1"
    assert str(imagenet_weights("resnet101")) == "ResNet101_Weights.IMAGENET1K_V2"
    assert len(imagenet_weights("resnet101").meta["categories"]) == 1000


def test_imagenet_path_is_torchvisions_hub_cache(torch_home: Path, arch: str) -> None:
    expected = torch_home / "hub" / "checkpoints" / IMAGENET_FILES[arch]
    assert imagenet_checkpoint_path(arch) == expected
    assert os.path.basename(imagenet_weights(arch).url) == expected.name


def test_imagenet_cache_hit_matches_torchvisions_own_loading(
    arch: str, torch_home: Path, no_network: list[str], probe: torch.Tensor
) -> None:
    import torchvision

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(1)
        written = getattr(torchvision.models, arch)()
    path = torch_home / "hub" / "checkpoints" / IMAGENET_FILES[arch]
    path.parent.mkdir(parents=True)
    torch.save(written.state_dict(), path)
    del written

    model = build_model(arch, "imagenet")
    assert model.weights_info.kind == "imagenet"
    assert model.weights_info.trained
    ours = logits(model, probe)
    del model  # before torchvision builds its own (a VGG16 is 0.53 GB)
    gc.collect()

    # torchvision, asked for the same weights, reads the same cached file.
    reference = getattr(torchvision.models, arch)(weights=imagenet_weights(arch)).eval()
    assert torch.equal(ours, logits(reference, probe))
    assert no_network == []


def test_imagenet_offline_miss_says_where_to_put_the_file(
    torch_home: Path, no_network: list[str]
) -> None:
    with pytest.raises(ImageNetUnavailable) as error:
        build_model("resnet101", "imagenet")
    folder = torch_home / "hub" / "checkpoints"
    # What the user can act on comes first: the file and the folder; the reason is short.
    assert str(error.value) == (
        f"resnet101-cd907fc2.pth is not in {folder} and could not be downloaded "
        "(no internet connection): put it there, or use --weights random"
    )
    assert isinstance(error.value, WeightsError)
    assert no_network == ["download.pytorch.org"]
    assert list(folder.iterdir()) == []


def test_imagenet_unavailable_has_the_parts_of_its_message(
    torch_home: Path, no_network: list[str]
) -> None:
    with pytest.raises(ImageNetUnavailable) as error:
        build_model("vgg16", "imagenet")
    failure = error.value
    assert failure.arch == "vgg16"
    assert failure.file == "vgg16-397923af.pth"
    assert failure.folder == torch_home / "hub" / "checkpoints"
    assert failure.reason == "no internet connection"
    assert failure.url == imagenet_weights("vgg16").url
    assert failure.url not in str(failure)
    assert failure.sentence == (
        "ImageNet weights for vgg16 are not available (no internet connection): "
        f"put vgg16-397923af.pth in {failure.folder}."
    )


def _http_error(code: int) -> urllib.error.HTTPError:
    return urllib.error.HTTPError("https://x/y.pth", code, "Not Found", Message(), None)


class _Reply:
    """Enough of an HTTP response for torch.hub: a size, then data that ends early or fails."""

    def __init__(self, failure: BaseException) -> None:
        self.failure = failure

    def __enter__(self) -> _Reply:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def info(self) -> Message:
        message = Message()
        message["Content-Length"] = "1000"
        return message

    def read(self, _size: int) -> bytes:
        raise self.failure


# Where it fails ("connect": reaching the host; "fetch": the download), how, and what is said.
DOWNLOAD_FAILURES: dict[str, tuple[str, Callable[[], BaseException], str]] = {
    "no-dns": (
        "connect",
        lambda: socket.gaierror(socket.EAI_NONAME, "Name or service not known"),
        "no internet connection",
    ),
    "dns-again": (
        "connect",
        lambda: socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution"),
        "no internet connection",
    ),
    "unreachable": (
        "connect",
        lambda: OSError(errno.ENETUNREACH, "Network is unreachable"),
        "no internet connection",
    ),
    "connect-timeout": ("connect", lambda: TimeoutError("timed out"), "no internet connection"),
    "refused": (
        "connect",
        lambda: ConnectionRefusedError(errno.ECONNREFUSED, "Connection refused"),
        "server refused the connection",
    ),
    "proxy-no-dns": (
        "fetch",
        lambda: urllib.error.URLError(socket.gaierror(-2, "Name or service not known")),
        "no internet connection",
    ),
    "http-404": ("fetch", lambda: _http_error(404), "server refused (HTTP 404)"),
    "http-503": ("fetch", lambda: _http_error(503), "server refused (HTTP 503)"),
    "reset": (
        "fetch",
        lambda: ConnectionResetError(errno.ECONNRESET, "Connection reset by peer"),
        "download interrupted",
    ),
    "url-reset": (
        "fetch",
        lambda: urllib.error.URLError(ConnectionResetError(errno.ECONNRESET, "reset")),
        "download interrupted",
    ),
    "incomplete": ("fetch", lambda: http.client.IncompleteRead(b"12"), "download interrupted"),
    "remote-closed": (
        "fetch",
        lambda: http.client.RemoteDisconnected("Remote end closed connection"),
        "download interrupted",
    ),
    "read-timeout": (
        "fetch",
        lambda: TimeoutError("The read operation timed out"),
        "download timed out",
    ),
    "hash": (
        "fetch",
        lambda: RuntimeError('invalid hash value (expected "cd907fc2", got "0123abcd")'),
        "download damaged (checksum mismatch)",
    ),
    "certificate": (
        "fetch",
        lambda: urllib.error.URLError(ssl.SSLCertVerificationError(1, "certificate verify failed")),
        "secure connection failed (certificate not trusted)",
    ),
    "ssl": (
        "fetch",
        lambda: ssl.SSLError(1, "[SSL: WRONG_VERSION_NUMBER] wrong version number"),
        "secure connection failed",
    ),
    "disk-full": (
        "fetch",
        lambda: OSError(errno.ENOSPC, "No space left on device"),
        "no space left on the disk",
    ),
    "read-only": (
        "fetch",
        lambda: PermissionError(errno.EACCES, "Permission denied"),
        "cannot write there (permission denied)",
    ),
}


@pytest.mark.parametrize("kind", sorted(DOWNLOAD_FAILURES))
def test_download_failures_are_said_short_and_human(
    kind: str, torch_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    phase, failure, reason = DOWNLOAD_FAILURES[kind]

    def fail(*_args: object, **_kwargs: object) -> None:
        raise failure()

    if phase == "connect":
        monkeypatch.setattr(socket, "create_connection", fail)
        monkeypatch.setattr(torch.hub, "download_url_to_file", pytest.fail)
    else:
        monkeypatch.setattr(socket, "create_connection", lambda *a, **k: _Closable())
        monkeypatch.setattr(torch.hub, "download_url_to_file", fail)
    with pytest.raises(ImageNetUnavailable) as error:
        build_model("resnet101", "imagenet", progress=False)
    folder = torch_home / "hub" / "checkpoints"
    assert error.value.reason == reason
    assert str(error.value) == (
        f"resnet101-cd907fc2.pth is not in {folder} and could not be downloaded ({reason}): "
        "put it there, or use --weights random"
    )
    assert not imagenet_checkpoint_path("resnet101").exists()


def test_a_download_cut_short_by_the_server_is_interrupted(
    torch_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """torch.hub's own download, over a reply that breaks off: no half file is left."""
    monkeypatch.setattr(socket, "create_connection", lambda *a, **k: _Closable())
    failure = ConnectionResetError(errno.ECONNRESET, "Connection reset by peer")
    monkeypatch.setattr(torch.hub, "urlopen", lambda *a, **k: _Reply(failure))
    with pytest.raises(ImageNetUnavailable, match=r"\(download interrupted\): put it there"):
        build_model("resnet101", "imagenet", progress=False)
    assert list((torch_home / "hub" / "checkpoints").iterdir()) == []


def test_a_folder_that_cannot_be_made_is_said(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "a-file"
    home.write_text("not a folder")
    monkeypatch.setenv("TORCH_HOME", str(home))
    monkeypatch.setattr(socket, "create_connection", lambda *a, **k: _Closable())
    with pytest.raises(ImageNetUnavailable) as error:
        build_model("vgg16", "imagenet", progress=False)
    assert error.value.reason == f"cannot create the folder ({os.strerror(errno.ENOTDIR).lower()})"
    assert str(error.value).startswith(f"vgg16-397923af.pth is not in {home}/hub/checkpoints and")


def test_imagenet_download_goes_through_torch_hub_with_hash_check(
    torch_home: Path,
    monkeypatch: pytest.MonkeyPatch,
    trained_like: dict[str, torch.Tensor],
    probe: torch.Tensor,
    trained_logits: torch.Tensor,
) -> None:
    requests: list[tuple[str, str, str | None, bool]] = []
    monkeypatch.setattr(socket, "create_connection", lambda *a, **k: _Closable())

    def fake_download(
        url: str, dst: str, hash_prefix: str | None = None, progress: bool = True
    ) -> None:
        requests.append((url, dst, hash_prefix, progress))
        torch.save(trained_like, dst)

    monkeypatch.setattr(torch.hub, "download_url_to_file", fake_download)
    model = build_model("resnet101", "imagenet", progress=False)
    path = imagenet_checkpoint_path("resnet101")
    assert requests == [(imagenet_weights("resnet101").url, str(path), "cd907fc2", False)]
    assert torch.equal(logits(model, probe), trained_logits)
    build_model("resnet101", "imagenet")  # now a cache hit: no second download
    assert len(requests) == 1


def test_corrupt_cached_imagenet_file_is_named(torch_home: Path, no_network: list[str]) -> None:
    path = imagenet_checkpoint_path("vgg16")
    path.parent.mkdir(parents=True)
    path.write_bytes(b"\x80\x04 half a download")
    assert "damaged or not a PyTorch checkpoint" in refusal("vgg16", "imagenet", file=path)


class _Closable:
    def __enter__(self) -> _Closable:
        return self

    def __exit__(self, *exc: object) -> None:
        return None


def test_a_pickled_whole_model_is_refused_with_advice(tmp_path: Path) -> None:
    path = tmp_path / "whole-model.pth"
    torch.save(nn.Linear(2, 2), path)
    message = refusal("resnet101", path)
    assert "torch.nn.modules.linear.Linear" in message
    assert "save model.state_dict() instead" in message


def test_an_unreadable_file_is_refused_in_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = _save(tmp_path / "locked.pth", {"fc.bias": torch.zeros(1000)})

    def denied(self: Path, *args: object, **kwargs: object) -> object:
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "open", denied)
    assert "cannot be read (Permission denied)" in refusal("resnet101", path)


def test_a_vgg16_checkpoint_file_gives_torchvisions_logits(
    tmp_path: Path, torchvision_model: Callable[[str], nn.Module], probe: torch.Tensor
) -> None:
    reference = torchvision_model("vgg16")
    path = tmp_path / "vgg16.pth"
    torch.save(reference.state_dict(), path)
    model = build_model("vgg16", path)
    assert torch.equal(logits(model, probe), logits(reference, probe))


def test_weights_of_the_wrong_type_are_a_type_error() -> None:
    with pytest.raises(TypeError, match="'imagenet', 'random' or a path"):
        build_model("vgg16", None)  # type: ignore[arg-type]


@pytest.fixture
def meta_resnet() -> nn.Module:
    with torch.device("meta"):
        return ResNet101()


def _with(state: dict[str, torch.Tensor], key: str, value: torch.Tensor) -> dict[str, torch.Tensor]:
    changed = dict(state)
    changed[key] = value
    return changed


UNUSABLE: dict[str, tuple[str, Callable[[torch.Tensor], torch.Tensor], str]] = {
    "meta": ("fc.weight", lambda t: torch.empty_like(t, device="meta"), "on the meta device"),
    "sparse": ("fc.bias", lambda t: t.to_sparse(), "sparse_coo tensor"),
    "nan": (
        "layer3.7.bn2.running_var",
        lambda t: t.clone().fill_(float("nan")),
        "holds NaN or infinite values",
    ),
    "inf": (
        "conv1.weight",
        lambda t: t.clone().fill_(float("inf")),
        "holds NaN or infinite values",
    ),
    "complex": ("fc.bias", lambda t: t.to(torch.complex64), "complex64, not floating point"),
    "integer": ("fc.bias", lambda t: t.to(torch.int64), "int64, not floating point"),
    "float-counter": (
        "bn1.num_batches_tracked",
        lambda t: t.to(torch.float32),
        "float32, not an integer",
    ),
}


@pytest.mark.parametrize("kind", sorted(UNUSABLE))
def test_unusable_tensors_are_refused_by_key(
    kind: str, meta_resnet: nn.Module, trained_like: dict[str, torch.Tensor]
) -> None:
    key, spoil, reason = UNUSABLE[kind]
    state = _with(trained_like, key, spoil(trained_like[key]))
    with pytest.raises(WeightsError) as error:
        apply_state_dict(meta_resnet, state, source="ckpt.pth")
    message = str(error.value)
    assert message.startswith(f"ckpt.pth: unusable weights: {key} (")
    assert reason in message


def test_a_meta_tensor_in_a_file_is_refused(
    tmp_path: Path, trained_like: dict[str, torch.Tensor], probe: torch.Tensor
) -> None:
    path = tmp_path / "meta.pth"
    torch.save(_with(trained_like, "fc.weight", torch.empty(1000, 2048, device="meta")), path)
    with pytest.raises(WeightsError, match=r"unusable weights: fc\.weight \(on the meta device"):
        build_model("resnet101", path)


def test_shared_tensors_in_a_checkpoint_are_untied(
    tmp_path: Path, trained_like: dict[str, torch.Tensor]
) -> None:
    shared = trained_like["layer3.1.conv2.weight"]
    state = dict(trained_like)
    for block in range(1, 23):  # the seed article's bug: one block's weights used 22 times
        state[f"layer3.{block}.conv2.weight"] = shared
    path = tmp_path / "tied.pth"
    torch.save(state, path)
    model = build_model("resnet101", path)
    weights = [model.layer3[block].conv2.weight for block in range(1, 23)]
    assert all(torch.equal(w, shared) for w in weights)
    assert len({w.untyped_storage().data_ptr() for w in weights}) == 22
    with torch.no_grad():
        weights[0].zero_()
    assert weights[1].abs().sum() > 0


def test_names_in_messages_stay_on_one_short_line(
    tmp_path: Path, meta_resnet: nn.Module, trained_like: dict[str, torch.Tensor]
) -> None:
    odd = tmp_path / "two\nlines\x1b[2J.pth"
    odd.write_text("text")
    with pytest.raises(WeightsError) as error:
        build_model("resnet101", odd)
    assert "\n" not in str(error.value)
    assert "\x1b" not in str(error.value)
    assert "two\\nlines\\x1b[2J.pth" in str(error.value)

    state = dict(trained_like)
    state["evil\n\x1b[2Jkey"] = torch.zeros(1)
    state["k" * 1_000_000] = torch.zeros(1)
    with pytest.raises(WeightsError) as error:
        apply_state_dict(meta_resnet, state, source="ckpt.pth")
    message = str(error.value)
    assert "\n" not in message
    assert "\x1b" not in message
    assert len(message) < 400
    assert "evil\\n\\x1b[2Jkey" in message


def test_a_name_too_long_for_the_file_system_is_refused(tmp_path: Path) -> None:
    path = tmp_path / ("w" * 300 + ".pth")
    with pytest.raises(WeightsError) as error:
        build_model("resnet101", path)
    message = str(error.value)
    assert "\n" not in message
    assert len(message) < 400


def test_large_finite_weights_whose_sum_overflows_are_accepted(
    meta_resnet: nn.Module, trained_like: dict[str, torch.Tensor]
) -> None:
    huge = torch.full((1000,), 3e38)
    assert not torch.isfinite(huge.sum())
    apply_state_dict(meta_resnet, _with(trained_like, "fc.bias", huge), source="ckpt.pth")
    assert torch.equal(meta_resnet.fc.bias, huge)


# --- which architecture a checkpoint is for -------------------------------------------------


@pytest.mark.parametrize("arch", ["vgg16", "resnet101"])
@pytest.mark.parametrize("prefix", ["", "model.", "module._orig_mod."])
def test_the_architecture_of_a_checkpoint_is_read_from_its_keys(
    tmp_path: Path, arch: str, prefix: str
) -> None:
    with torch.device("meta"):
        keys = build_model(arch, "random").state_dict()
    path = tmp_path / "weights.pth"
    # Keys alone say the architecture: tensors of one number each stand in for the weights.
    torch.save({"state_dict": {prefix + key: torch.zeros(1) for key in keys}, "epoch": 1}, path)
    assert models.weights.architecture_of(path) == arch


def test_a_checkpoint_of_neither_architecture_has_none(tmp_path: Path) -> None:
    torch.save({"encoder.weight": torch.zeros(1)}, tmp_path / "other.pth")
    (tmp_path / "notes.txt").write_text("not weights")
    assert models.weights.architecture_of(tmp_path / "other.pth") is None
    assert models.weights.architecture_of(tmp_path / "notes.txt") is None
    assert models.weights.architecture_of(tmp_path / "missing.pth") is None
