"""``fmviz info``: the stage table, the weights line, exit codes and one-line errors."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import NamedTuple
from urllib.parse import urlparse

import pytest
import torch

from visualizer.cli import main


class DashM(NamedTuple):
    missing: Path
    running: Future[subprocess.CompletedProcess[str]]


PARAMETERS = {"vgg16": "138,357,544", "resnet101": "44,549,160"}


@pytest.fixture
def torch_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty torch hub cache: no ImageNet weights."""
    home = tmp_path / "torch-home"
    monkeypatch.setenv("TORCH_HOME", str(home))
    return home


def torchvision_file(arch: str) -> str:
    """torchvision's own file name for the ImageNet weights fmviz uses."""
    import torchvision

    weights = {
        "vgg16": torchvision.models.VGG16_Weights.IMAGENET1K_V1,
        "resnet101": torchvision.models.ResNet101_Weights.IMAGENET1K_V2,
    }[arch]
    return os.path.basename(urlparse(weights.url).path)


def zero_checkpoint(arch: str, path: Path) -> Path:
    """A checkpoint of ``arch`` in torchvision's format (its keys and shapes), all zeros."""
    import torchvision

    with torch.device("meta"):
        shapes = getattr(torchvision.models, arch)().state_dict()
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({key: torch.zeros(t.shape, dtype=t.dtype) for key, t in shapes.items()}, path)
    return path


def test_info_prints_the_stage_table(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["info", "--model", "resnet101", "--weights", "random"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[:2] == [
        "resnet101: 44,549,160 parameters",
        "  weights: random (untrained, seed 0)",
    ]
    assert "C4    layer3       1024×14×14" in out
    assert "C5    layer4       2048×7×7" in out


def test_offline_info_needs_no_imagenet_weights(
    torch_home: Path, no_network: list[object], capsys: pytest.CaptureFixture[str]
) -> None:
    """Offline, without cached weights: shapes and counts from the architecture, exit 0."""
    assert main(["info"]) == 0
    captured = capsys.readouterr()
    assert captured.err == ""
    folder = torch_home / "hub" / "checkpoints"
    for arch, count in PARAMETERS.items():
        assert f"{arch}: {count} parameters\n" in captured.out
        assert (
            f"  weights: ImageNet not available ({torchvision_file(arch)} is not in {folder}; "
            "put it there or use --weights random)\n"
        ) in captured.out
    assert "C1    features.3   64×224×224" in captured.out
    assert "C5    layer4       2048×7×7" in captured.out
    assert no_network == []  # not even tried
    assert not torch_home.exists()  # and nothing written


def test_cached_imagenet_weights_are_named_without_loading_them(
    torch_home: Path, no_network: list[object], capsys: pytest.CaptureFixture[str]
) -> None:
    cached = zero_checkpoint(
        "resnet101", torch_home / "hub" / "checkpoints" / torchvision_file("resnet101")
    )
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    assert f"  weights: ImageNet (IMAGENET1K_V2), cached at {cached}\n" in out
    assert "  weights: ImageNet not available (vgg16-" in out
    assert no_network == []


def test_parameter_counts_are_torchvisions(
    torch_home: Path, no_network: list[object], capsys: pytest.CaptureFixture[str]
) -> None:
    import torchvision

    assert main(["info"]) == 0
    out = capsys.readouterr().out
    for arch in PARAMETERS:
        with torch.device("meta"):
            count = sum(p.numel() for p in getattr(torchvision.models, arch)().parameters())
        assert f"{arch}: {count:,} parameters\n" in out


def test_a_weights_file_is_loaded_and_named(
    tmp_path: Path, no_network: list[object], capsys: pytest.CaptureFixture[str]
) -> None:
    path = zero_checkpoint("resnet101", tmp_path / "mine.pth")
    assert main(["info", "--model", "resnet101", "--weights", str(path)]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[:2] == ["resnet101: 44,549,160 parameters", f"  weights: {path}"]
    assert no_network == []


def test_a_weights_file_that_does_not_fit_is_an_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "tiny.pth"
    torch.save({"fc.bias": torch.zeros(10)}, path)
    assert main(["info", "--model", "resnet101", "--weights", str(path)]) == 1
    captured = capsys.readouterr()
    assert captured.err.startswith(f"error: {path}: does not fit resnet101: missing ")
    assert captured.err.count("\n") == 1
    assert captured.out == ""


def test_info_takes_a_size(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["info", "--model", "vgg16", "--weights", "random", "--size", "64x96"]) == 0
    out = capsys.readouterr().out
    assert "output for a 64×96 input" in out
    assert "C1    features.3   64×64×96" in out
    assert "C5    features.29  512×4×6" in out


def test_info_lists_the_feature_layers_with_torchvisions_shapes(
    capsys: pytest.CaptureFixture[str],
) -> None:
    import torchvision

    assert main(["info", "--model", "vgg16", "--weights", "random", "--layers"]) == 0
    out = capsys.readouterr().out
    assert "  33 feature layers, in the order they run:\n" in out
    rows = out.split("in the order they run:\n")[1].splitlines()[1:]
    assert len(rows) == 33
    # Each row's shape is what torchvision's module of that name gives (meta device: shapes
    # only); the classifier (2-D output) is no feature layer.
    shapes: dict[str, str] = {}
    network = torchvision.models.vgg16().to("meta")

    def record(name: str, output: torch.Tensor) -> None:
        shapes.setdefault(name, "×".join(map(str, output.shape[1:])))

    handles = [
        module.register_forward_hook(lambda _m, _i, output, name=name: record(name, output))
        for name, module in network.named_modules()
        if name
    ]
    with torch.no_grad():
        network(torch.empty(1, 3, 224, 224, device="meta"))
    for handle in handles:
        handle.remove()
    for row in rows:
        name, _type, shape, _stage = row.split()
        assert shapes[name] == shape, row
    assert rows[0].split() == ["features.0", "Conv2d", "64×224×224", "C1"]
    assert rows[-1].split() == ["avgpool", "AdaptiveAvgPool2d", "512×7×7", "-"]
    assert not any(row.split()[0].startswith("classifier") for row in rows)


def test_bad_weights_fail_with_one_line_and_status_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.pth"
    bad.write_text("not weights")
    assert main(["info", "--model", "vgg16", "--weights", str(bad)]) == 1
    captured = capsys.readouterr()
    assert captured.err == f"error: {bad}: a text file, not a checkpoint\n"
    assert captured.out == ""


@pytest.mark.parametrize(
    "words",
    [["info", "--size", "big"], ["info", "--model", "alexnet"], ["info", "--size", "8x8"]],
)
def test_bad_usage_exits_2(words: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(words)
    assert exit_info.value.code == 2
    assert "usage: fmviz" in capsys.readouterr().err


@pytest.fixture(scope="module", autouse=True)
def dash_m(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DashM]:
    """``python -m visualizer info`` with a missing weights file, started with the module's
    first test: its 5 s (nearly all of it importing torch and torchvision on one core) pass
    while the in-process tests run; the test below waits for it and judges it."""
    missing = tmp_path_factory.mktemp("dash-m") / "missing.pth"
    words = ["info", "--model", "resnet101", "--weights", str(missing)]
    with ThreadPoolExecutor(1, thread_name_prefix="test-dash-m") as pool:
        yield DashM(missing, pool.submit(
            subprocess.run,
            [sys.executable, "-m", "visualizer", *words],
            capture_output=True,
            text=True,
            check=False,
            timeout=120,
            env=dict(os.environ),  # as it is now, not as a test's monkeypatch leaves it
            cwd=os.getcwd(),  # likewise
        ))  # fmt: skip


def test_python_dash_m_visualizer_runs_without_a_traceback(dash_m: DashM) -> None:
    missing = dash_m.missing
    result = dash_m.running.result()
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"error: {missing}: no such file (weights are 'imagenet', 'random' or a checkpoint path)"
    ]
