"""Shared by the command-line tests."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor

import pytest
import torch

from tests.cli.verdicts import CASES, REQUESTS, WINDOWS_AT_ONCE, Request, prepared, run_window

VERDICT_TESTS = ("cli", "test_one_verdict.py")


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """Every connection or download attempt is recorded and fails, as offline."""
    attempts: list[object] = []

    def refuse(*args: object, **_kwargs: object) -> None:
        attempts.append(args)
        raise OSError(101, "Network is unreachable")

    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(torch.hub, "download_url_to_file", refuse)
    monkeypatch.setattr(torch.hub, "urlopen", refuse)
    return attempts


@pytest.fixture(scope="session", autouse=True)
def verdict_windows(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, tuple[Request, Future[tuple[int, str, bool]]]]]:
    """The window cases of tests/cli/test_one_verdict.py, each its ``fmviz … --screenshot``
    running in a folder of its own, three at a time: started with the first test of this
    folder, so that they run while the others do."""
    if not any(item.path.parts[-2:] == VERDICT_TESTS for item in request.session.items):
        yield {}
        return
    names = [name for name, front_end in CASES if front_end == "window"]
    if torch.cuda.is_available():  # those cases are skipped
        names = [name for name in names if "--device" not in REQUESTS[name].options]
    with ThreadPoolExecutor(WINDOWS_AT_ONCE, thread_name_prefix="test-window") as pool:
        started = {}
        for name in names:
            folder = tmp_path_factory.mktemp("window")
            asked = prepared(name, folder)
            started[name] = (asked, pool.submit(run_window, asked, folder))
        yield started
