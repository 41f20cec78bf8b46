"""``fmviz bench --index``: one small real run, read as JSON and as text; targets not judged.

The run is ResNet101 on 16 tiny generated images (resize 64, crop 56, batch 8, one worker),
in-process; the commands of P12 and P13 (fresh processes of ``fmviz index``, some seconds
each, Ray's start-up some more) are replaced by fixed figures, so that the ratios can be
checked against them. One real command runs meanwhile, in the background, to check the
wrapper that measures them.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import io
import json
import math
import statistics
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

import pytest
import torch

from visualizer.bench import index
from visualizer.bench.index import CommandRun, IndexBenchReport
from visualizer.cli import main

ARGV = [
    "bench", "--index", "--model", "resnet101", "--images", "16", "--batch-size", "8",
    "--workers", "1", "--resize", "64", "--crop", "56",
]  # fmt: skip
# What the replaced commands "measured": (wall s, largest process MiB) by backend and images.
FIGURES = {("local", 1): (5.0, 1000.0), ("local", 16): (8.0, 1050.0), ("ray", 16): (12.0, 900.0)}


class BenchRun(NamedTuple):
    status: int
    out: str
    err: str
    report: IndexBenchReport
    calls: list[dict[str, Any]]


def fake_command(calls: list[dict[str, Any]]):
    def run(sources, out, arguments, *, images, backend="local") -> CommandRun:
        calls.append(
            {"sources": list(sources), "out": out, "arguments": list(arguments), "images": images}
            | {"backend": backend}
        )
        wall, largest = FIGURES[backend, images]
        return CommandRun(
            backend=backend,
            images=images,
            status=0,
            wall_s=wall,
            indexing_s=wall / 2,
            largest_mib=largest,
            tree_mib=largest * 1.5,
            tree_measure="proportional set size (PSS)",
            processes=3,
        )

    return run


@pytest.fixture(scope="module")
def real_command(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[concurrent.futures.Future[CommandRun]]:
    """``fmviz index`` on 4 tiny images in a fresh process through the bench's wrapper,
    started at once in the background (it takes some seconds)."""
    folder = tmp_path_factory.mktemp("bench-index-command")
    index.make_images(folder / "images", 4)
    arguments = index._index_arguments(
        "resnet101", "random", torch.device("cpu"), batch_size=2, workers=0, resize=64, crop=56
    )
    with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="test-index-cmd") as pool:
        yield pool.submit(
            index.run_index_command,
            [str(folder / "images")],
            folder / "index",
            arguments,
            images=4,
        )


@pytest.fixture(scope="module")
def bench_run(device: str, real_command: concurrent.futures.Future[CommandRun]) -> BenchRun:
    """``fmviz bench --index --json`` on 16 tiny images, the commands replaced by FIGURES."""
    del real_command  # started first: it runs while this does
    reports: list[IndexBenchReport] = []
    calls: list[dict[str, Any]] = []
    run_index_bench = index.run_index_bench

    def spy(*args: Any, **kwargs: Any) -> IndexBenchReport:
        reports.append(run_index_bench(*args, **kwargs))
        return reports[-1]

    out, err = io.StringIO(), io.StringIO()
    with (
        pytest.MonkeyPatch.context() as patch,
        contextlib.redirect_stdout(out),
        contextlib.redirect_stderr(err),
    ):
        patch.setattr(index, "run_index_bench", spy)
        patch.setattr(index, "run_index_command", fake_command(calls))
        patch.setattr(index, "ray_installed", lambda: True)
        status = main([*ARGV, "--json", "--device", device])
    assert len(reports) == 1
    return BenchRun(status, out.getvalue(), err.getvalue(), reports[0], calls)


@pytest.fixture(scope="module")
def results(bench_run: BenchRun) -> dict[str, Any]:
    assert bench_run.status == 0, bench_run.err
    return json.loads(bench_run.out)


def test_the_json_names_the_run(results: dict[str, Any], device: str) -> None:
    assert results["bench"] == "index"
    assert results["device"].startswith("CPU" if device == "cpu" else "CUDA")
    assert results["networks"] == ["resnet101"]
    assert results["weights"] == "random"
    assert (results["images"], results["small_images"]) == (16, 1)
    assert (results["batch_size"], results["workers"], results["top"]) == (8, 1, 9)
    assert results["stages"] == ["C1", "C2", "C3", "C4", "C5"]
    assert list(results["preprocessing"]) == ["resnet101"]
    assert "centre crop 56×56" in results["preprocessing"]["resnet101"]
    assert results["runs"] == (1 if device == "cpu" else 3)


def test_each_target_has_its_entry(results: dict[str, Any]) -> None:
    for key, target, compare in (("P11", 0.85, "≥"), ("P12", 1.10, "≤"), ("P13", 1.5, "≤")):
        entry = results[key]
        assert (entry["target"], entry["compare"], entry["unit"]) == (target, compare, "×")
        ratio = entry["ratio"]
        assert isinstance(ratio, float)
        assert math.isfinite(ratio)
        assert ratio > 0
        assert entry["ok"] == (ratio >= target if compare == "≥" else ratio <= target)
        assert results["ratios"][key] == ratio  # unrounded in both places
        assert results["met"][key] == entry["ok"]
    assert results["targets"] == {"P11": 0.85, "P12": 1.10, "P13": 1.5}


def test_p11_is_images_per_second_through_fmviz_over_torchvision(
    results: dict[str, Any],
) -> None:
    network = results["P11"]["networks"]["resnet101"]
    images = results["images"]
    runs = results["runs"]
    assert len(network["fmviz_s"]) == len(network["torchvision_s"]) == runs
    assert len(network["fmviz_loop_s"]) == runs
    assert network["fmviz_images_per_s"] == pytest.approx(
        images / statistics.median(network["fmviz_s"])
    )
    assert network["torchvision_images_per_s"] == pytest.approx(
        images / statistics.median(network["torchvision_s"])
    )
    assert network["ratio"] == pytest.approx(
        network["fmviz_images_per_s"] / network["torchvision_images_per_s"], rel=1e-12
    )
    assert results["P11"]["ratio"] == network["ratio"]  # the slowest network's (one here)
    # The loop alone is part of the whole call.
    assert all(
        loop < whole
        for loop, whole in zip(network["fmviz_loop_s"], network["fmviz_s"], strict=True)
    )


def test_p12_and_p13_follow_from_the_commands_figures(
    results: dict[str, Any], bench_run: BenchRun
) -> None:
    assert results["P12"]["peak_mib"] == {"large": 1050.0, "small": 1000.0}
    assert results["P12"]["ratio"] == 1050.0 / 1000.0
    assert results["P12"]["tree_peak_mib"] == {"large": 1575.0, "small": 1500.0}
    assert "ru_maxrss" in results["P12"]["measure"]
    assert "PSS" in results["P12"]["tree_measure"]
    assert results["P13"]["ratio"] == 12.0 / 8.0
    assert (results["P13"]["ray_s"], results["P13"]["local_s"]) == (12.0, 8.0)
    assert results["P12"]["network"] == results["P13"]["network"] == "resnet101"
    commands = results["commands"]
    assert [commands[name]["images"] for name in ("small", "large", "ray")] == [1, 16, 16]
    assert commands["ray"]["backend"] == "ray"


def test_the_commands_index_the_same_images_with_the_same_settings(
    bench_run: BenchRun, device: str
) -> None:
    small, large, ray = bench_run.calls
    assert [call["backend"] for call in bench_run.calls] == ["local", "local", "ray"]
    assert small["arguments"] == large["arguments"] == ray["arguments"]
    arguments = " ".join(small["arguments"])
    for option in (
        "--model resnet101",
        "--weights random",
        f"--device {torch.device(device).type}",
        "--stages C1,C2,C3,C4,C5",
        "--top 9",
        "--batch-size 8",
        "--workers 1",
        "--resize 64",
        "--crop 56",
    ):
        assert option in arguments
    assert small["sources"][0].endswith("small.txt")
    assert large["sources"] == ray["sources"]
    assert Path(large["sources"][0]).name == "images"
    assert len({call["out"] for call in bench_run.calls}) == 3  # each its own index folder


def test_per_image_costs_and_the_estimate(results: dict[str, Any]) -> None:
    costs = results["per_image_s"]["resnet101"]
    assert costs["batch_size"] == 8
    for name in ("read", "read_torchvision", "network", "network_torchvision"):
        assert math.isfinite(costs[name])
        assert 0 < costs[name] < 10, name
    estimate = results["imagenet_estimate_h"]
    assert estimate["images"] == 1_281_167
    assert estimate["from_costs"]["resnet101"] > 0
    p11 = results["P11"]["networks"]["resnet101"]
    assert estimate["at_measured_rate"]["resnet101"] == pytest.approx(
        1_281_167 / p11["fmviz_images_per_s"] / 3600
    )
    assert set(results["phases_s"]) == {"images", "P11 resnet101", "P12", "P13"}
    assert set(results["expected_s"]) == {"P11 resnet101", "P12", "P13"}


def test_the_expected_times_are_said_on_stderr(bench_run: BenchRun) -> None:
    lines = bench_run.err.splitlines()
    assert [line.split(":")[0] for line in lines] == ["P11 resnet101", "P12", "P13"]
    assert all("expected ≈" in line for line in lines)


def test_text_mode_prints_the_figures_and_a_line_per_target(
    bench_run: BenchRun, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    report = bench_run.report
    monkeypatch.setattr(index, "run_index_bench", lambda *_a, **_k: report)
    assert main(ARGV) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0].startswith(f"fmviz index on {report.device}: 16 generated images")
    ratios = report.ratios
    targets = {line.split()[0]: line for line in lines if line[:3] in ("P11", "P12", "P13")}
    assert f"{ratios['P11']:6.3f}× (target ≥ 0.85×, " in targets["P11"]
    assert "resnet101:" in targets["P11"]
    assert targets["P12"] == (f"P12   1.050× (target ≤ 1.1×, ok): {index.WHAT['P12']}")
    assert targets["P13"] == (f"P13   1.500× (target ≤ 1.5×, ok): {index.WHAT['P13']}")
    assert any(line.startswith("resnet101") and len(line.split()) == 5 for line in lines)
    assert "ImageNet (1,281,167 images, 1 worker): resnet101 ≈ " in out
    assert "local      1 images:     5.0 s (indexing 2.5 s), largest process 1000 MiB" in out


def test_without_ray_p13_says_why(
    bench_run: BenchRun, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """``--no-ray``, and Ray not installed: P13 is not measured, and its note says why."""
    calls: list[dict[str, Any]] = []
    monkeypatch.setattr(index, "run_index_command", fake_command(calls))
    phases = index._Phases(["P12", "P13"], None, None)
    paths = [str(tmp_path / f"{n}.jpg") for n in range(16)]
    for ray, installed, note in (
        (False, True, "skipped (--no-ray)"),
        (True, False, "skipped: Ray is not installed (pip install 'fmviz[ray]')"),
    ):
        monkeypatch.setattr(index, "ray_installed", lambda installed=installed: installed)
        report = dataclasses.replace(bench_run.report, small=None, large=None, ray=None, notes={})
        index._command_phases(report, tmp_path, paths, [], phases, ray=ray)
        entry = report.as_json()["P13"]
        assert (entry["ratio"], entry["ok"], entry["note"]) == (None, None, note)
        assert "P13" not in report.ratios
        assert report.ratios["P12"] == 1050.0 / 1000.0
    assert [call["backend"] for call in calls] == ["local", "local"] * 2


def test_the_reference_reads_what_fmviz_reads(networks, device: str, tmp_path: Path) -> None:
    """P11 compares the same work: torchvision's transform gives fmviz's inputs, and
    torchvision's twin holds the same network."""
    from visualizer.core.analysis import Analyzer
    from visualizer.core.atlas.dataset import ImageFiles

    shared = networks.analyzer("resnet101", device)
    analyzer = Analyzer(shared.model, device=device, resize=64, crop=56)
    paths = [str(path) for path in index.make_images(tmp_path, 3)]
    ours = ImageFiles(paths, analyzer.preprocessing)
    theirs = index.TorchvisionFiles(paths, index.torchvision_transform(analyzer.preprocessing))
    for number in range(3):
        pixels = ours[number][1]  # uint8: normalised on the device
        torch.testing.assert_close(
            analyzer.preprocessing.normalized(pixels), theirs[number], atol=1e-6, rtol=0
        )
    twin = index.torchvision_twin(analyzer)
    x = theirs[0].unsqueeze(0).to(analyzer.device)
    with torch.inference_mode():
        torch.testing.assert_close(twin(x), analyzer.model(x))


def test_the_images_are_the_same_every_time(tmp_path: Path) -> None:
    first = index.make_images(tmp_path / "a", 4)
    second = index.make_images(tmp_path / "b", 4)
    assert [p.read_bytes() for p in first] == [p.read_bytes() for p in second]
    from PIL import Image

    sizes = []
    for path in first:
        with Image.open(path) as image:
            sizes.append(image.size)
    assert all(280 <= max(size) <= 360 and 210 <= min(size) <= 270 for size in sizes), sizes
    assert sizes[3][0] < sizes[3][1]  # every fourth one portrait


def test_the_wrapper_measures_a_real_command(
    real_command: concurrent.futures.Future[CommandRun],
) -> None:
    run = real_command.result(timeout=300)
    assert run.status == 0, run.error
    assert run.error is None
    assert run.indexing_s is not None
    assert 0 < run.indexing_s < run.wall_s
    assert 100 < run.largest_mib < 16_000  # torch and a ResNet101
    assert run.processes >= 1
    assert run.tree_mib > 0


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["bench", "--images", "5"], "--images needs --index"),
        (["bench", "--no-ray"], "--no-ray needs --index"),
        (["bench", "--index", "--startup"], "--index and --startup measure different things"),
        (["bench", "--index", "--workers", "-1"], "--workers: must be 0 or more"),
    ],
)
def test_index_options_are_checked(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err
