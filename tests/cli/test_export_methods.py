"""``fmviz export --methods … --layers …``: each method's overlay under its name, with its
method, Captum parameters, layer, class and faithfulness in the PNG's text (the areas equal
``Analyzer.faithfulness`` called directly); the figure of them side by side; each layer's
grid; bad options exit 2 with argparse's one-line error; a bad image among good ones.

Fast on two cores: the session's random ResNet101 is shared (tests/conftest.py ``networks``),
the images are cropped to 48×48 (``--resize 48 --crop 48``: the network is 20× cheaper than at
224×224; C5 is 2×2), and Captum and the curves take the fewest steps (``--parameter n_steps=2``,
``--faithfulness-steps 2``). One export run serves most tests.
"""

from __future__ import annotations

import contextlib
import inspect
import io
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pytest
from PIL import Image

from visualizer import core as engine
from visualizer.cli import main
from visualizer.cli import options as cli_options
from visualizer.core.analysis import AnalysisResult, Analyzer
from visualizer.core.export import ExportOptions, output_names
from visualizer.core.render import overlay, render_grid

SIZE = ["--resize", "48", "--crop", "48"]
FAST = ["--parameter", "n_steps=2", "--faithfulness-steps", "2"]
METHODS = ("gradcam", "saliency", "integrated-gradients")
LAYERS = ("C5", "layer3.4")  # a stage (--cam-stage's: Grad-CAM's usual file) and a module


class Run(NamedTuple):
    status: int
    out: str
    err: str


def write_image(path: Path, seed: int = 0) -> Path:
    pixels = np.random.default_rng(seed).integers(0, 256, (40, 48, 3), dtype=np.uint8)
    Image.fromarray(pixels, "RGB").save(path)
    return path


def run_export(*words: str | Path, device: str) -> Run:
    """``fmviz export WORDS --weights random --device DEVICE``, in-process."""
    out, err = io.StringIO(), io.StringIO()
    argv = ["export", *map(str, words), "--weights", "random", "--device", device]
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        status = main(argv)
    return Run(status, out.getvalue(), err.getvalue())


@pytest.fixture(scope="module")
def analyzer_of(networks, device: str) -> Iterator:
    """Analyzers on the session's shared random networks, one per set of options (the
    preprocessing differs, the network is the same), for the command and for the checks."""
    built: dict[tuple, Analyzer] = {}

    def analyzer(model: str, weights: str, device: str, **options: object) -> Analyzer:
        assert weights == "random"
        key = (model, str(device), tuple(sorted(options.items())))
        if key not in built:
            shared = networks.analyzer(model, str(device))
            built[key] = Analyzer(shared.model, device=device, **options)
        return built[key]

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(engine, "Analyzer", analyzer)
        yield lambda: analyzer("resnet101", "random", device, resize=48, crop=48)


class Export(NamedTuple):
    run: Run
    out: Path
    images: dict[str, Path]  # stem: the good images
    bad: Path
    analyzer: Analyzer


@pytest.fixture(scope="module")
def export(tmp_path_factory: pytest.TempPathFactory, device: str, analyzer_of) -> Export:
    """Two good images and a bad one between them, three methods, two layers."""
    folder = tmp_path_factory.mktemp("methods")
    good = {"cat": write_image(folder / "cat.png", 1), "dog": write_image(folder / "dog.jpg", 2)}
    bad = folder / "broken.png"
    bad.write_bytes(b"not a picture")
    words = ["--stages", "C5", "--methods", ",".join(METHODS), "--layers", ",".join(LAYERS)]
    out = folder / "out"
    run = run_export(
        good["cat"], bad, good["dog"], *words, *SIZE, *FAST, "--out", out, device=device
    )
    return Export(run, out, good, bad, analyzer_of())


def expected_names(stem: str) -> set[str]:
    return {
        f"{stem}_resnet101_C5.png",  # the stage grid, as without --layers
        f"{stem}_resnet101_layer3.4.png",  # the module's grid
        f"{stem}_resnet101_gradcam_C5.png",  # Grad-CAM at --cam-stage: its usual name, once
        f"{stem}_resnet101_gradcam_layer3.4.png",
        f"{stem}_resnet101_saliency.png",
        f"{stem}_resnet101_integrated-gradients.png",
        f"{stem}_resnet101_methods.png",
        f"{stem}_resnet101_timings.csv",
    }


@pytest.fixture(scope="module")
def analysis(export: Export) -> AnalysisResult:
    """The cat's analysis, as the command made it (with layer3.4's output)."""
    return export.analyzer.analyze(export.images["cat"], layers=["layer3.4"])


def text_of(path: Path) -> dict[str, str]:
    with Image.open(path) as picture:
        return dict(picture.text)


def test_a_bad_image_among_good_ones_is_one_error_line(export: Export) -> None:
    assert export.run.status == 1
    assert export.run.err.splitlines() == [
        f"error: {export.bad}: not an image (unrecognised or corrupt data)"
    ]
    assert export.run.out == f"exported 2 of 3 images (16 files) to {export.out}\n"


def test_the_good_images_have_every_file_and_nothing_else(export: Export) -> None:
    found = {path.name for path in export.out.iterdir()}
    assert found == expected_names("cat") | expected_names("dog")
    options = ExportOptions(
        stages=("C5",), methods=METHODS, layers=LAYERS, parameters={}, faithfulness_steps=2
    )
    assert set(output_names("cat", "resnet101", options)) == expected_names("cat")


@pytest.mark.parametrize(
    ("method", "layer", "file", "parameters"),
    [
        ("saliency", None, "cat_resnet101_saliency.png", {}),
        ("gradcam", "layer3.4", "cat_resnet101_gradcam_layer3.4.png", {}),
    ],
)
def test_each_overlay_says_its_method_and_faithfulness_as_the_engine_computes_them(
    export: Export,
    analysis: AnalysisResult,
    *,
    method: str,
    layer: str | None,
    file: str,
    parameters: dict[str, object],
) -> None:
    attribution = export.analyzer.attribute(analysis, method, layer=layer)
    faithfulness = export.analyzer.faithfulness(analysis, attribution, steps=2)
    text = text_of(export.out / file)
    assert text["method"] == method
    assert json.loads(text["parameters"]) == parameters
    assert text["layer"] == (layer or "input")
    top1, label, _ = analysis.topk[0]
    assert text["target"] == f"{top1} {label}"
    assert float(text["deletion_auc"]) == pytest.approx(faithfulness.deletion_auc, abs=1e-6)
    assert float(text["insertion_auc"]) == pytest.approx(faithfulness.insertion_auc, abs=1e-6)
    np.testing.assert_allclose(json.loads(text["deletion_curve"]), faithfulness.deletion, atol=1e-6)
    assert "2 steps" in text["faithfulness"]
    # The provenance every export carries.
    assert text["model"] == "resnet101"
    assert text["weights"].startswith("random")
    assert text["source"] == str(export.images["cat"])
    assert "crop 48" in text["preprocessing"]
    # The picture is that method's map over the input.
    expected = overlay(analysis.view, attribution.map, opacity=0.5, colormap="turbo")
    with Image.open(export.out / file) as picture:
        assert np.abs(np.asarray(picture).astype(int) - expected).max() <= 1


def test_the_parameters_given_are_those_captum_ran_with(export: Export) -> None:
    text = text_of(export.out / "dog_resnet101_integrated-gradients.png")
    assert json.loads(text["parameters"]) == {
        "n_steps": 2,  # --parameter n_steps=2
        "baselines": 0.0,
        "internal_batch_size": 16,
    }
    assert text["paper"].startswith("Sundararajan")
    assert "IntegratedGradients" in text["method description"]


def test_gradcam_at_the_cam_stage_is_the_usual_file_with_the_new_text(export: Export) -> None:
    text = text_of(export.out / "cat_resnet101_gradcam_C5.png")
    assert text["method"] == "gradcam"
    assert text["stage"] == text["layer"] == "C5"
    assert "LayerGradCam" in text["method description"]
    assert {"deletion_auc", "insertion_auc"} <= set(text)


def test_the_side_by_side_figure_lists_every_attribution(export: Export) -> None:
    text = text_of(export.out / "dog_resnet101_methods.png")
    assert text["methods"] == ",".join(METHODS)
    summary = json.loads(text["attributions"])
    assert [(entry["method"], entry["layer"]) for entry in summary] == [
        ("gradcam", "C5"),
        ("gradcam", "layer3.4"),
        ("saliency", None),
        ("integrated-gradients", None),
    ]
    for entry in summary:  # the same numbers as each method's own file
        name = entry["method"] + (f"_{entry['layer']}" if entry["layer"] else "")
        own = text_of(export.out / f"dog_resnet101_{name}.png")
        assert entry["deletion_auc"] == float(own["deletion_auc"])
        assert entry["insertion_auc"] == float(own["insertion_auc"])
    assert "attributions of class" in text["title"]


def test_a_layer_grid_is_its_output_as_a_grid(export: Export, analysis: AnalysisResult) -> None:
    path = export.out / "cat_resnet101_layer3.4.png"
    text = text_of(path)
    assert text["layer"] == "layer3.4"
    assert "stage" not in text
    assert text["channels"] == "1024"  # a Bottleneck of ResNet101's C4, 3×3 at 48×48
    grid = render_grid(analysis.layers["layer3.4"])
    with Image.open(path) as picture:
        np.testing.assert_array_equal(np.asarray(picture), grid.indices)


# --- options -----------------------------------------------------------------------------------

EXPORT = ["export", "in.png", "--out", "out"]


@pytest.mark.parametrize(
    ("words", "message"),
    [
        pytest.param(
            ["--methods", "gradcam,lime"], "'lime' is not a method: choose from", id="method"
        ),
        pytest.param(["--methods", ","], "name at least one method", id="no-method"),
        pytest.param(
            ["--methods", "saliency", "--parameter", "n_steps=2"],
            "--parameter n_steps: no method asked for takes it (saliency); "
            "integrated-gradients and smoothgrad-ig do",
            id="not-taken",
        ),
        pytest.param(
            ["--methods", "occlusion", "--parameter", "strides=2x"],
            "strides=2x: give a size in pixels",
            id="bad-pair",
        ),
        pytest.param(
            ["--methods", "integrated-gradients", "--parameter", "n_steps=0"],
            "n_steps=0: give a whole number of at least 1",
            id="bad-count",
        ),
        pytest.param(
            ["--methods", "integrated-gradients", "--parameter", "steps=4"],
            "'steps' is not a parameter fmviz passes on",
            id="unknown-parameter",
        ),
        pytest.param(
            ["--methods", "saliency", "--parameter", "stdevs"], "is not NAME=VALUE", id="no-value"
        ),
        pytest.param(["--parameter", "n_steps=2"], "name the methods (--methods)", id="no-methods"),
        pytest.param(
            ["--methods", "saliency", "--compare"], "not with --compare", id="with-compare"
        ),
        pytest.param(["--faithfulness-steps", "0"], "must be at least 1", id="steps-0"),
    ],
)
def test_bad_options_exit_2_with_one_error_line(
    words: list[str], message: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main([*EXPORT[:3], str(tmp_path / "out"), *words])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: fmviz export")
    [line] = [line for line in err.splitlines() if "error:" in line]
    assert line.startswith("fmviz export: error: ")
    assert message in line
    assert "Traceback" not in err
    assert not (tmp_path / "out").exists()


def test_an_unknown_layer_exits_2_naming_it(
    tmp_path: Path, device: str, analyzer_of, capsys: pytest.CaptureFixture[str]
) -> None:
    image = write_image(tmp_path / "p.png")
    with pytest.raises(SystemExit) as exit_info:
        main(["export", str(image), "--out", str(tmp_path / "out"), "--weights", "random",
              "--device", device, *SIZE, "--layers", "C3,layer9.1"])  # fmt: skip
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.splitlines()[-1].startswith(
        "fmviz export: error: argument --layers: unknown layer 'layer9.1'"
    )
    assert not (tmp_path / "out").exists()


def test_methods_all_and_parameters_parse() -> None:
    from visualizer.cli import export as command
    from visualizer.core import attribution_methods, faithfulness

    assert command.DEFAULT_FAITHFULNESS_STEPS == faithfulness.DEFAULT_STEPS
    assert cli_options.methods("all") == tuple(attribution_methods.DEFAULTS)  # what runs
    assert cli_options.methods("Saliency, gradcam,saliency") == ("saliency", "gradcam")
    assert cli_options.layer_names("c3,layer3.4,C3") == ("C3", "layer3.4")
    assert cli_options.parameter("sliding_window_shapes=16x8") == (
        "sliding_window_shapes",
        (16, 8),
    )
    assert cli_options.parameter("strides=16,16") == ("strides", (16, 16))
    assert cli_options.parameter("strides=8") == ("strides", (8, 8))
    assert cli_options.parameter("baselines=-0.5") == ("baselines", -0.5)
    assert cli_options.parameter("method=riemann_trapezoid") == ("method", "riemann_trapezoid")
    chosen = cli_options.method_parameters(
        ("saliency", "integrated-gradients", "smoothgrad-ig"),
        [("n_steps", 4), ("stdevs", 0.1), ("n_steps", 3)],
    )
    assert chosen == {
        "saliency": {},
        "integrated-gradients": {"n_steps": 3},
        "smoothgrad-ig": {"n_steps": 3, "stdevs": 0.1},
    }


def test_every_parameter_offered_is_one_captum_takes() -> None:
    """The names ``--parameter`` offers are in the signature of Captum's method (SmoothGrad:
    NoiseTunnel's, or the method it wraps)."""
    from captum.attr import (
        GuidedGradCam,
        IntegratedGradients,
        LayerGradCam,
        NoiseTunnel,
        Occlusion,
        Saliency,
    )

    def names(*classes: type) -> set[str]:
        return {name for c in classes for name in inspect.signature(c.attribute).parameters}

    takes = {
        "gradcam": names(LayerGradCam),
        "guided-gradcam": names(GuidedGradCam),
        "saliency": names(Saliency),
        "integrated-gradients": names(IntegratedGradients),
        "occlusion": names(Occlusion),
        "smoothgrad-saliency": names(NoiseTunnel, Saliency),
        "smoothgrad-ig": names(NoiseTunnel, IntegratedGradients),
    }
    for method, offered in cli_options.METHOD_PARAMETERS.items():
        assert set(offered) <= takes[method], method


def test_output_names_without_methods_are_as_before_and_with_them_in_order() -> None:
    assert output_names("x", "vgg16", ExportOptions(stages=("C1",))) == [
        "x_vgg16_C1.png",
        "x_vgg16_gradcam_C5.png",
        "x_vgg16_timings.csv",
    ]
    options = ExportOptions(
        stages=("C1",), cam_stage="C4", methods=("guided-gradcam", "occlusion"), annotate=True
    )
    assert output_names("x", "vgg16", options) == [
        "x_vgg16_C1.png",
        "x_vgg16_C1_annotated.png",
        "x_vgg16_gradcam_C4.png",  # no gradcam asked: the usual overlay, as before
        "x_vgg16_gradcam_C4_annotated.png",
        "x_vgg16_guided-gradcam_C4.png",  # at --cam-stage when no --layers
        "x_vgg16_guided-gradcam_C4_annotated.png",
        "x_vgg16_occlusion.png",
        "x_vgg16_occlusion_annotated.png",
        "x_vgg16_methods.png",
        "x_vgg16_timings.csv",
    ]
    one = ExportOptions(stages=(), methods=("gradcam",), layers=("C2", "features.10"))
    assert output_names("x", "vgg16", one) == [
        "x_vgg16_C2.png",  # a stage among --layers: its stage grid
        "x_vgg16_features.10.png",
        "x_vgg16_gradcam_C5.png",  # --cam-stage's overlay, not among the layers asked
        "x_vgg16_gradcam_C2.png",
        "x_vgg16_gradcam_features.10.png",
        "x_vgg16_methods.png",
        "x_vgg16_timings.csv",
    ]


def test_bad_methods_end_to_end_exit_2_without_a_traceback(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "visualizer", *EXPORT, "--methods", "lime"],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
        cwd=tmp_path,
    )
    assert result.returncode == 2
    assert result.stderr.splitlines()[-1].startswith("fmviz export: error: argument --methods:")
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "out").exists()
