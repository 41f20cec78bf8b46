"""The corpus of broken and awkward inputs (corpus.py), written once, and the network it goes
through. Nothing here is autouse: the other tests of this folder are left alone."""

from __future__ import annotations

import contextlib
import io
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

import pytest

from tests.reliability.corpus import Corpus, build


@pytest.fixture(scope="session")
def written_corpus(tmp_path_factory: pytest.TempPathFactory) -> Corpus:
    return build(tmp_path_factory.mktemp("corpus"))


@pytest.fixture
def corpus(written_corpus: Corpus, monkeypatch: pytest.MonkeyPatch) -> Iterator[Corpus]:
    """The corpus, from its image folder (where a shell-like name would create its file); its
    vanishing files are made again afterwards, and nothing may have run a payload."""
    monkeypatch.chdir(written_corpus.image_folder)
    yield written_corpus
    ran = written_corpus.shell_ran()
    written_corpus.restore()
    assert ran == [], f"a file name or a checkpoint's payload was run: {ran}"


@pytest.fixture(scope="session")
def resnet(networks, device: str):
    """ResNet101 with random weights, the session's shared one, for this folder's API and CLI
    runs."""
    return networks.analyzer("resnet101", device)


class Run(NamedTuple):
    """What one in-process ``fmviz`` run gave: exit status, stdout, stderr."""

    status: int
    out: str
    err: str


@pytest.fixture
def fmviz(resnet, monkeypatch: pytest.MonkeyPatch) -> Callable[..., Run]:
    """``fmviz(*words)``: the command line, in-process; ``--weights random`` for ResNet101 on
    the test device is the shared network, any other weights are loaded as fmviz would."""
    from visualizer import core as engine
    from visualizer.cli import main

    real = engine.Analyzer

    def analyzer(model: str, weights: str, device: str, **options: Any):
        if (model, weights, device) == ("resnet101", "random", resnet.device.type):
            return resnet
        return real(model, weights, device, **options)

    monkeypatch.setattr(engine, "Analyzer", analyzer)

    def run(*words: object) -> Run:
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            status = main([str(word) for word in words])
        return Run(status, out.getvalue(), err.getvalue())

    return run
