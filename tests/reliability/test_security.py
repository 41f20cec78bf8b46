"""Untrusted files stay data: a checkpoint's pickle never runs, whatever the way in; a file name
never reaches a shell; names written into PNG metadata stay one printable line; and the torch
that reads checkpoints is one without known torch.load flaws. The window's ways in are in
tests/ui/test_bad_input.py."""

from __future__ import annotations

import ast
import os
import pickle
import re
import struct
import subprocess
import sys
import zlib
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest
import safetensors.torch
import torch
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.version import Version
from PIL import Image

from models import WeightsError, build_model
from models.resnet import ResNet101
from models.weights import load_weights
from tests.reliability.corpus import (
    CHECKPOINT_KEYS,
    MALICIOUS_KEYS,
    PWNED,
    SHELL_NAMES,
    Corpus,
    ExecPayload,
    ShellPayload,
    noise,
    saved,
    zero_state,
)
from visualizer.core import Analyzer
from visualizer.core.export import save_png

ROOT = Path(__file__).resolve().parents[2]
Fmviz = Callable[..., Any]  # conftest's fmviz: words → Run(status, out, err)


# --- checkpoints: torch.load(weights_only=True) or safetensors, and nothing else -----------------


class Loads:
    """What reading checkpoints called: torch.load's keyword arguments, safetensors' files,
    and any use of pickle's own (code-running) unpickler."""

    def __init__(self) -> None:
        self.torch: list[dict[str, Any]] = []
        self.safetensors: list[str] = []
        self.pickle: list[str] = []


@pytest.fixture
def loads(monkeypatch: pytest.MonkeyPatch) -> Loads:
    seen = Loads()
    real_load, real_safetensors = torch.load, safetensors.torch.load_file

    def torch_load(*args: Any, **kwargs: Any) -> Any:
        seen.torch.append(kwargs)
        return real_load(*args, **kwargs)

    def safetensors_load(path: Any, *args: Any, **kwargs: Any) -> Any:
        seen.safetensors.append(os.fspath(path))
        return real_safetensors(path, *args, **kwargs)

    class Unpickler(pickle.Unpickler):  # what torch.load(weights_only=False) unpickles with
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            seen.pickle.append("pickle.Unpickler")
            raise AssertionError("pickle's own unpickler used")

    def refused(name: str) -> Callable[..., Any]:
        def call(*args: Any, **kwargs: Any) -> Any:
            seen.pickle.append(name)
            raise AssertionError(f"{name} used")

        return call

    monkeypatch.setattr(torch, "load", torch_load)
    monkeypatch.setattr(safetensors.torch, "load_file", safetensors_load)
    monkeypatch.setattr(pickle, "Unpickler", Unpickler)
    monkeypatch.setattr(pickle, "load", refused("pickle.load"))
    monkeypatch.setattr(pickle, "loads", refused("pickle.loads"))
    return seen


def test_the_payloads_are_live(tmp_path: Path) -> None:
    """The corpus's payloads do run when a checkpoint is unpickled unsafely, so that their
    marker's absence elsewhere means something."""
    for payload in (ShellPayload, ExecPayload):
        marker = tmp_path / payload.__name__
        path = tmp_path / f"{payload.__name__}.pth"
        torch.save({"fc.bias": payload(marker)}, path)
        torch.load(path, weights_only=False)  # what fmviz must never do
        assert marker.exists()


ENTRY_POINTS: dict[str, Callable[[Path], object]] = {
    "build_model": lambda path: build_model("resnet101", path),
    "build_model(str)": lambda path: build_model("resnet101", str(path)),
    "load_weights": lambda path: load_weights(ResNet101, path),
    "Analyzer": lambda path: Analyzer("resnet101", path, "cpu", progress=False),
}


@pytest.mark.parametrize("entry", sorted(ENTRY_POINTS))
@pytest.mark.parametrize("key", MALICIOUS_KEYS)
def test_a_malicious_pickle_never_runs_through_the_api(
    corpus: Corpus, loads: Loads, key: str, entry: str
) -> None:
    case = corpus.checkpoints[key]
    with pytest.raises(WeightsError, match=r"refused: it holds Python objects"):
        ENTRY_POINTS[entry](case.path)
    assert not corpus.marker.exists()
    assert [call.get("weights_only") for call in loads.torch] == [True]
    assert loads.pickle == []


EXPORT = ("export", "{image}", "--out", "{out}", "--weights", "{weights}", "--device", "cpu")
COMMANDS = {
    "export": (*EXPORT, "--model", "resnet101"),
    # Without --model the file is read once more, to find the architecture it is for.
    "export-reading-the-architecture": EXPORT,
    "info": ("info", "--model", "resnet101", "--weights", "{weights}"),
}


@pytest.mark.parametrize("command", sorted(COMMANDS))
@pytest.mark.parametrize("key", MALICIOUS_KEYS)
def test_a_malicious_pickle_never_runs_through_the_command_line(
    corpus: Corpus, loads: Loads, fmviz: Fmviz, key: str, command: str
) -> None:
    case = corpus.checkpoints[key]
    out = corpus.folder / f"out-{command}-{key}"
    values = {"image": corpus.images["plain"].path, "out": out, "weights": case.path}
    run = fmviz(*(word.format(**values) for word in COMMANDS[command]))
    assert run.status == 1
    assert re.fullmatch(rf"error: {re.escape(str(case.path))}: refused: [^\n]*\n", run.err)
    assert not out.exists() or list(out.iterdir()) == []
    assert not corpus.marker.exists()
    reads = 2 if command == "export-reading-the-architecture" else 1
    assert [call.get("weights_only") for call in loads.torch] == [True] * reads
    assert loads.pickle == []


def test_every_checkpoint_is_read_with_weights_only_or_safetensors(
    corpus: Corpus, loads: Loads, tmp_path: Path
) -> None:
    """The whole checkpoint corpus, and one that fits: torch.load(weights_only=True) for all
    but the safetensors file, which safetensors reads; pickle's unpickler never."""
    good = tmp_path / "zeros.pth"
    good.write_bytes(saved(zero_state("resnet101")))
    assert build_model("resnet101", good).weights_info.kind == "file"
    for key in CHECKPOINT_KEYS:
        with pytest.raises(WeightsError):
            build_model("resnet101", corpus.checkpoints[key].path)
    assert loads.safetensors == [str(corpus.checkpoints["safetensors-bad-header"].path)]
    # Every file but the empty one and the safetensors one reached torch.load.
    assert len(loads.torch) == len(CHECKPOINT_KEYS) - 2 + 1
    assert all(call.get("weights_only") is True for call in loads.torch)
    assert loads.pickle == []
    assert not corpus.marker.exists()


@pytest.fixture(scope="module", autouse=True)
def end_to_end(written_corpus: Corpus) -> Iterator[Future[subprocess.CompletedProcess[str]]]:
    """The end-to-end run of the test below, started with the module's first test: its 3 s
    (most of it importing torch and torchvision on one core) pass while the in-process tests
    run. Whatever it ran would show there too (each test's ``corpus`` checks the marker)."""
    evil = written_corpus.checkpoints["malicious-shell"].path
    images = [str(written_corpus.image_folder / name) for name in SHELL_NAMES]
    words = ["export", *images, "--out", "out", "--weights", str(evil), "--device", "cpu"]
    with ThreadPoolExecutor(1, thread_name_prefix="test-end-to-end") as pool:
        yield pool.submit(
            subprocess.run,
            [sys.executable, "-m", "visualizer", *words],
            capture_output=True,
            text=True,
            check=False,
            timeout=120,
            cwd=written_corpus.image_folder,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )


def test_fmviz_export_with_a_malicious_checkpoint_end_to_end(
    corpus: Corpus, end_to_end: Future[subprocess.CompletedProcess[str]]
) -> None:
    """``python -m visualizer export`` in a process of its own, images named like shell
    commands, weights that would run a shell command: one error line, exit 1, nothing run."""
    evil = corpus.checkpoints["malicious-shell"].path
    result = end_to_end.result()
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert result.stderr.splitlines() == [
        f"error: {evil}: refused: it holds Python objects (posix.system) that could run code "
        "when loaded; only tensors are loaded (save model.state_dict() instead)"
    ]
    assert not corpus.marker.exists()
    assert not (corpus.image_folder / PWNED).exists()


# --- no shell ----------------------------------------------------------------------------------

SHELL_CALLS = {
    "os.system",
    "os.popen",
    "os.execl",
    "os.execle",
    "os.execlp",
    "os.execlpe",
    "os.execv",
    "os.execve",
    "os.execvp",
    "os.execvpe",
    "os.spawnl",
    "os.spawnle",
    "os.spawnlp",
    "os.spawnlpe",
    "os.spawnv",
    "os.spawnve",
    "os.spawnvp",
    "os.spawnvpe",
    "os.posix_spawn",
    "os.posix_spawnp",
    "os.startfile",
    "subprocess.getoutput",
    "subprocess.getstatusoutput",
    "pty.spawn",
}
SUBPROCESS_CALLS = {"subprocess.run", "subprocess.Popen", "subprocess.call"}
SUBPROCESS_CALLS |= {"subprocess.check_call", "subprocess.check_output"}


def _dotted(node: ast.AST) -> str:
    if isinstance(node, ast.Attribute):
        return f"{_dotted(node.value)}.{node.attr}"
    return node.id if isinstance(node, ast.Name) else "?"


def _imported_names(tree: ast.AST) -> dict[str, str]:
    """Local name → what it stands for, for ``from os import system as run`` and the like."""
    names = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            for alias in node.names:
                names[alias.asname or alias.name] = f"{node.module}.{alias.name}"
        elif isinstance(node, ast.Import):
            for alias in node.names:
                names[alias.asname or alias.name] = alias.name
    return names


def shell_uses(source: str) -> list[str]:
    """Calls in ``source`` that run a shell, or could: ``os.system``, ``os.popen``, ``os.exec*``,
    ``shell=True``, a command line given as one string, QProcess."""
    tree = ast.parse(source)
    names = _imported_names(tree)
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        head, _, rest = _dotted(node.func).partition(".")
        called = ".".join(filter(None, [names.get(head, head), rest]))
        where = f"line {node.lineno}: {called}"
        if called in SHELL_CALLS or "QProcess" in called:
            found.append(where)
        for keyword in node.keywords:
            shell = keyword.arg == "shell"
            if shell and not (isinstance(keyword.value, ast.Constant) and not keyword.value.value):
                found.append(f"{where}(shell=…)")
        command = node.args[0] if node.args else None
        if called in SUBPROCESS_CALLS and isinstance(command, (ast.Constant, ast.JoinedStr)):
            found.append(f"{where}(a command line as one string)")
    return found


def sources() -> Iterator[Path]:
    for package in ("visualizer", "models"):
        yield from sorted((ROOT / package).rglob("*.py"))


@pytest.mark.parametrize(
    ("snippet", "expected"),
    [
        ("import os\nos.system('ls ' + name)", ["line 2: os.system"]),
        ("from os import popen as p\np(name)", ["line 2: os.popen"]),
        ("import subprocess\nsubprocess.run(cmd, shell=True)", ["line 2: subprocess.run(shell=…)"]),
        (
            "import subprocess as sp\nsp.check_output(f'convert {name}')",
            ["line 2: subprocess.check_output(a command line as one string)"],
        ),
        ("import os\nos.execvp('gs', ['gs', name])", ["line 2: os.execvp"]),
        (
            "from PySide6.QtCore import QProcess\nQProcess.startDetached(name)",
            ["line 2: PySide6.QtCore.QProcess.startDetached"],
        ),
        ("import subprocess\nsubprocess.run([sys.executable, name], shell=False)", []),
    ],
)
def test_the_shell_finder_finds_shells(snippet: str, expected: list[str]) -> None:
    assert shell_uses(snippet) == expected


def test_no_source_file_runs_a_shell() -> None:
    files = list(sources())
    assert len(files) > 20
    found = {
        str(path.relative_to(ROOT)): uses
        for path in files
        if (uses := shell_uses(path.read_text()))
    }
    assert found == {}
    text = "\n".join(path.read_text() for path in files)
    assert not re.search(r"shell\s*=\s*True|os\.system|os\.popen", text)


def test_a_shell_like_name_runs_nothing_through_the_command_line(
    corpus: Corpus, fmviz: Fmviz, device: str, tmp_path: Path
) -> None:
    """In-process, from the images' folder: each image is exported, and nothing is run."""
    images = [corpus.image_folder / name for name in SHELL_NAMES]
    out = tmp_path / "out"
    words = ["--out", out, "--stages", "C5", "--weights", "random", "--device", device]
    run = fmviz("export", *images, *words)
    assert (run.status, run.err) == (0, "")
    for image in images:
        with Image.open(out / f"{image.stem}_resnet101_C5.png") as grid:
            assert grid.text["source"] == str(image)
    assert not (corpus.image_folder / PWNED).exists()
    assert not (tmp_path / PWNED).exists()


# --- PNG metadata: one printable line per value --------------------------------------------------

# A file name: a newline, a carriage return, a terminal escape, a bell, a tab, DEL, a byte that
# is not UTF-8 (0xE9, held as the surrogate \udce9) and a Unicode line separator.
ODD_NAME = "two\nlines\r\x1b[31mred\x07?\t\x7f caf\udce9 \u2028.png"
ODD_NAME_ESCAPED = "two\\nlines\\r\\x1b[31mred\\x07?\\t\\x7f caf\\udce9 \\u2028.png"


def text_chunks(path: Path) -> dict[str, str]:
    """The text chunks of a PNG, read byte by byte (tEXt Latin-1, zTXt, iTXt UTF-8)."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    position, texts = 8, {}
    while position < len(data):
        (length,) = struct.unpack(">I", data[position : position + 4])
        kind = data[position + 4 : position + 8]
        body = data[position + 8 : position + 8 + length]
        position += 12 + length
        if kind == b"tEXt":
            key, _, value = body.partition(b"\0")
            texts[key.decode("latin-1")] = value.decode("latin-1")
        elif kind == b"zTXt":
            key, _, value = body.partition(b"\0")
            texts[key.decode("latin-1")] = zlib.decompress(value[1:]).decode("latin-1")
        elif kind == b"iTXt":
            key, _, rest = body.partition(b"\0")
            compressed, rest = rest[0], rest[2:]
            _language, _, rest = rest.partition(b"\0")
            _translated, _, value = rest.partition(b"\0")
            value = zlib.decompress(value) if compressed else value
            texts[key.decode("latin-1")] = value.decode("utf-8")
    return texts


def assert_one_printable_line(texts: dict[str, str]) -> None:
    assert texts
    for key, value in texts.items():
        assert value.isprintable(), f"{key}: {value!r}"


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        (ODD_NAME, ODD_NAME_ESCAPED),
        ("nul\x00.png", "nul\\x00.png"),
        ("line\nfeed.png", "line\\nfeed.png"),
        (os.fsdecode(b"/photos/\xff\xfe.jpg"), "/photos/\\udcff\\udcfe.jpg"),
        ("C:\\photos\\cat.png", "C:\\photos\\cat.png"),  # printable: kept as it is
        ("猫 café.png", "猫 café.png"),
    ],
)
def test_save_png_writes_each_value_as_one_printable_line(
    tmp_path: Path, source: str, expected: str
) -> None:
    path = save_png(tmp_path / "x.png", Image.new("RGB", (2, 2)), {"source": source, "k": "v"})
    texts = text_chunks(path)
    assert_one_printable_line(texts)
    assert texts == {"source": expected, "k": "v"}
    with Image.open(path) as reread:
        assert reread.text == texts


@pytest.fixture
def odd_image(tmp_path: Path) -> Path:
    """A picture whose file name holds a newline, a terminal escape, a bell and a byte that is
    not UTF-8."""
    path = tmp_path / "in" / ODD_NAME
    path.parent.mkdir()
    noise(16, 12).save(path, "PNG")
    return path


def test_fmviz_export_writes_an_odd_file_name_as_one_line(
    odd_image: Path, fmviz: Fmviz, device: str, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    words = ["--out", out, "--stages", "C1,C5", "--weights", "random", "--device", device]
    run = fmviz("export", odd_image, *words)
    assert (run.status, run.err) == (0, "")
    pngs = sorted(out.glob("*.png"))
    assert len(pngs) == 3
    for png in pngs:
        texts = text_chunks(png)
        assert_one_printable_line(texts)
        assert texts["source"] == f"{odd_image.parent}/{ODD_NAME_ESCAPED}"
    assert "\n" not in run.out.rstrip("\n")


# --- torch without known torch.load flaws --------------------------------------------------------

# CVE-2025-32434: torch.load(weights_only=True) could still run code; fixed in torch 2.6.
# CVE-2026-24747: another way past weights_only; fixed in torch 2.10, which pairs with
# torchvision 0.25.
MINIMUM = {"torch": Version("2.10"), "torchvision": Version("0.25")}


def requirement(name: str) -> Requirement:
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        tomllib = pytest.importorskip("tomli")
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    found = [Requirement(text) for text in project["dependencies"]]
    named = [req for req in found if req.name == name]
    assert len(named) == 1, f"{name} is not required once: {named}"
    return named[0]


def lower_bound(specifier: SpecifierSet) -> Version | None:
    """The least version ``specifier`` can allow, by its ``>=``, ``>``, ``==`` and ``~=``."""
    bounds = [
        Version(spec.version)
        for spec in specifier
        if spec.operator in (">=", ">", "==", "~=") and "*" not in spec.version
    ]
    return max(bounds, default=None)


@pytest.mark.parametrize(
    ("text", "bound"),
    [(">=2.10,<3", "2.10"), ("~=2.6.0", "2.6.0"), ("<3", None), (">=2.1,>=2.10", "2.10")],
)
def test_lower_bound(text: str, bound: str | None) -> None:
    assert lower_bound(SpecifierSet(text)) == (Version(bound) if bound else None)


@pytest.mark.parametrize("name", sorted(MINIMUM))
def test_the_torch_required_has_no_known_torch_load_flaw(name: str) -> None:
    specifier = requirement(name).specifier
    bound = lower_bound(specifier)
    assert bound is not None, f"{name} has no lower bound"
    assert bound >= MINIMUM[name], f"{name}{specifier} allows releases before {MINIMUM[name]}"
    flawed = {"torch": ["2.5.1", "2.6.0", "2.9.1"], "torchvision": ["0.20.1", "0.24.1"]}[name]
    assert not any(specifier.contains(version, prereleases=True) for version in flawed)
    assert specifier.contains(metadata.version(name), prereleases=True)  # the one installed
