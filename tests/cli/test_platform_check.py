"""Before Qt loads, ``fmviz`` checks that its platform plugin can start (``platform_check``):
a missing system library or an X server that is not there is one ``error:`` line and exit 1,
never Qt's abort (exit 134 and a core dump).

No test here starts a window: the subprocesses run on an X display that does not exist, and
stop at the check before Qt loads.
"""

from __future__ import annotations

import os
import platform
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from visualizer.ui import platform_check
from visualizer.ui.platform_check import (
    BASE_SYSTEM,
    NO_DISPLAY,
    PACKAGES,
    install_advice,
    missing_libraries,
    prepare,
)

ROOT = Path(__file__).resolve().parents[2]
CHELSEA = ROOT / "assets" / "samples" / "chelsea.jpg"
LINUX = sys.platform.startswith("linux")

# What ldd said on Debian 12 with the README's old list of libraries installed (shortened).
LDD_MISSING = """\
\tlinux-vdso.so.1 (0x00007fe5c9279000)
\tlibQt6XcbQpa.so.6 => /venv/site-packages/PySide6/Qt/plugins/platforms/../../lib/libQt6XcbQpa.so.6 (0x00007fe5c91ab000)
\tlibGL.so.1 => /lib/x86_64-linux-gnu/libGL.so.1 (0x00007fe5c911b000)
\tlibxkbcommon-x11.so.0 => /lib/x86_64-linux-gnu/libxkbcommon-x11.so.0 (0x00007fe5c910e000)
\tlibxcb-cursor.so.0 => /lib/x86_64-linux-gnu/libxcb-cursor.so.0 (0x00007fe5c85b3000)
\tlibxcb-icccm.so.4 => not found
\tlibxcb-util.so.1 => /lib/x86_64-linux-gnu/libxcb-util.so.1 (0x00007fe5c85ab000)
\tlibxcb-keysyms.so.1 => not found
\tlibxcb.so.1 => /lib/x86_64-linux-gnu/libxcb.so.1 (0x00007fe5c7dd6000)
\tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007fe5c741e000)
\tlibxcb-icccm.so.4 => not found
\tlibxcb-keysyms.so.1 => not found
\t/lib64/ld-linux-x86-64.so.2 (0x00007fe5c927b000)
"""  # noqa: E501 (ldd's own lines)
LDD_COMPLETE = "\n".join(line for line in LDD_MISSING.splitlines() if "not found" not in line)


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("error:")]


# The parts: ldd's report, the advice


def test_the_libraries_ldd_did_not_find_each_once_in_its_order() -> None:
    assert missing_libraries(LDD_MISSING) == ["libxcb-icccm.so.4", "libxcb-keysyms.so.1"]


@pytest.mark.parametrize(
    "output",
    [LDD_COMPLETE, "", "\tnot a dynamic executable\n", "ldd: ./x: No such file or directory\n"],
)
def test_nothing_missing_when_ldd_found_everything_or_said_nothing(output: str) -> None:
    assert missing_libraries(output) == []


def test_the_advice_names_the_libraries_and_the_command_that_installs_them() -> None:
    assert install_advice(["libxcb-icccm.so.4", "libxcb-keysyms.so.1"]) == (
        "libxcb-icccm.so.4 and libxcb-keysyms.so.1 are missing; on Debian or Ubuntu: "
        "sudo apt-get install libxcb-icccm4 libxcb-keysyms1"
    )


def test_a_package_holding_two_missing_libraries_is_named_once() -> None:
    advice = install_advice(["libglib-2.0.so.0", "libgthread-2.0.so.0", "libEGL.so.1"])
    assert advice.endswith("sudo apt-get install libglib2.0-0 libegl1")


def test_a_library_of_no_known_package_is_named_as_it_is() -> None:
    assert install_advice(["libxcb-icccm.so.4", "libfoo.so.2"]) == (
        "libxcb-icccm.so.4 and libfoo.so.2 are missing; on Debian or Ubuntu: "
        "sudo apt-get install libxcb-icccm4 (and the package that provides libfoo.so.2)"
    )
    assert install_advice(["libfoo.so.2"]) == (
        "libfoo.so.2 is missing; install the package that provides it"
    )


# Which platform Qt will use, and what is checked


@pytest.fixture
def linux(monkeypatch: pytest.MonkeyPatch) -> None:
    """As on Linux, with no ldd and no X server tried (each test says what it finds)."""
    monkeypatch.setattr(platform_check.sys, "platform", "linux")
    monkeypatch.setattr(platform_check, "_ldd", lambda _library: "")
    monkeypatch.setattr(platform_check, "x_server_problem", lambda _display: None)


@pytest.mark.usefixtures("linux")
def test_no_display_is_an_error_without_a_screenshot() -> None:
    environ: dict[str, str] = {}
    assert prepare(screenshot=False, environ=environ) == NO_DISPLAY
    assert environ == {}


@pytest.mark.usefixtures("linux")
def test_a_screenshot_with_no_display_is_taken_offscreen() -> None:
    environ: dict[str, str] = {}
    assert prepare(screenshot=True, environ=environ) is None
    assert environ == {"QT_QPA_PLATFORM": "offscreen"}


@pytest.mark.usefixtures("linux")
def test_the_xcb_platform_without_display_is_an_error() -> None:
    problem = prepare(screenshot=True, environ={"QT_QPA_PLATFORM": "xcb"})
    assert problem is not None
    assert problem.startswith("QT_QPA_PLATFORM=xcb needs an X display, and DISPLAY is not set")


@pytest.mark.parametrize(
    ("environ", "checked"),
    [
        ({"DISPLAY": ":0"}, "xcb"),
        ({"DISPLAY": ":0", "QT_QPA_PLATFORM": "xcb"}, "xcb"),
        ({"DISPLAY": ":0", "QT_QPA_PLATFORM": "offscreen"}, "offscreen"),
        ({"QT_QPA_PLATFORM": "offscreen:configfile=x.json"}, "offscreen"),
        # Left to Qt: a Wayland session, a plugin chosen by name, a list of plugins to try.
        ({"DISPLAY": ":0", "WAYLAND_DISPLAY": "wayland-0", "XDG_SESSION_TYPE": "wayland"}, None),
        ({"WAYLAND_DISPLAY": "wayland-0"}, None),
        ({"DISPLAY": ":0", "QT_QPA_PLATFORM": "wayland"}, None),
        ({"DISPLAY": ":0", "QT_QPA_PLATFORM": "xcb;wayland"}, None),
    ],
)
def test_the_plugin_checked_is_the_one_qt_will_load(
    linux, monkeypatch: pytest.MonkeyPatch, environ: dict[str, str], checked: str | None
) -> None:
    asked: list[Path | None] = []
    monkeypatch.setattr(platform_check, "_ldd", lambda library: asked.append(library) or "")
    assert prepare(screenshot=False, environ=environ) is None
    if checked is None:
        assert asked == []
    else:
        assert len(asked) == 1
        assert asked[0] is None or asked[0].name == f"libq{checked}.so"


@pytest.mark.usefixtures("linux")
def test_a_missing_library_is_named_with_its_package(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(platform_check, "_ldd", lambda _library: LDD_MISSING)
    problem = prepare(screenshot=False, environ={"DISPLAY": ":0"})
    assert problem == (
        "Qt's xcb platform plugin cannot load: libxcb-icccm.so.4 and libxcb-keysyms.so.1 are "
        "missing; on Debian or Ubuntu: sudo apt-get install libxcb-icccm4 libxcb-keysyms1"
    )


def test_no_check_off_linux(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(platform_check.sys, "platform", "darwin")
    monkeypatch.setattr(platform_check, "_ldd", lambda _library: LDD_MISSING)
    assert prepare(screenshot=False, environ={}) is None


@pytest.mark.skipif(not LINUX, reason="X displays are Linux's here")
def test_a_display_with_no_server_is_said_so(free_display: str) -> None:
    problem = platform_check.x_server_problem(free_display)
    assert problem is not None
    assert f"DISPLAY={free_display} names no X server" in problem
    assert platform_check.x_server_problem("not a display") is not None


@pytest.mark.skipif(not LINUX or shutil.which("ldd") is None, reason="needs Linux's ldd")
def test_the_real_plugin_is_read_by_the_real_ldd() -> None:
    library = platform_check.plugin_file("offscreen", {})
    assert library is not None  # where PySide6 keeps it, found without importing PySide6
    output = platform_check._ldd(library)
    assert "libQt6Gui.so.6 => " in output  # the offscreen plugin runs the tests: it loads here
    assert missing_libraries(output) == []


# fmviz itself: one line and exit 1, not Qt's abort


@pytest.fixture
def free_display() -> str:
    """An X display name no server has (no socket, no lock file)."""
    for number in range(173, 300):
        taken = (Path(f"/tmp/.X11-unix/X{number}"), Path(f"/tmp/.X{number}-lock"))  # noqa: S108
        if not any(path.exists() for path in taken):
            return f":{number}"
    pytest.skip("no free X display number")


def run_fmviz(tmp_path: Path, environ: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """``python -m visualizer CHELSEA --weights random --screenshot OUT`` on the xcb platform."""
    environment = {
        key: value
        for key, value in os.environ.items()
        if key not in ("WAYLAND_DISPLAY", "XDG_SESSION_TYPE", "QT_QPA_PLATFORM")
    }
    environment |= {"QT_QPA_PLATFORM": "xcb", "FMVIZ_SETTINGS": str(tmp_path / "s.ini")}
    environment |= environ
    shot = tmp_path / "shot.png"
    command = [sys.executable, "-m", "visualizer", str(CHELSEA), "--weights", "random"]
    done = subprocess.run(
        [*command, "--screenshot", str(shot)],
        capture_output=True,
        text=True,
        env=environment,
        cwd=tmp_path,
        timeout=120,
        check=False,
    )
    assert not shot.exists()
    assert not list(tmp_path.glob("core*"))
    return done


@pytest.mark.skipif(not LINUX, reason="Qt's xcb platform is Linux's")
def test_fmviz_on_a_display_with_no_x_server_exits_1_in_one_line(
    tmp_path: Path, free_display: str
) -> None:
    done = run_fmviz(tmp_path, {"DISPLAY": free_display})
    assert done.returncode == 1, done.stderr  # Qt's abort: -6 (SIGABRT), or 134 in a shell
    assert error_lines(done.stderr) == [
        f"error: cannot open the window: DISPLAY={free_display} names no X server that is "
        "running and lets this user in; start fmviz in the desktop session, or run it with "
        "QT_QPA_PLATFORM=offscreen and --screenshot PATH"
    ]
    assert done.stderr.strip() == error_lines(done.stderr)[0]  # nothing else: no Qt message


@pytest.mark.skipif(not LINUX, reason="Qt's xcb platform is Linux's")
def test_fmviz_missing_xcb_libraries_exits_1_naming_the_packages(
    tmp_path: Path, free_display: str
) -> None:
    fakes = tmp_path / "bin"
    fakes.mkdir()
    ldd = fakes / "ldd"
    ldd.write_text(f"#!/bin/sh\ncat <<'EOF'\n{LDD_MISSING}EOF\n")
    ldd.chmod(0o755)
    path = f"{fakes}{os.pathsep}{os.environ.get('PATH', '')}"
    done = run_fmviz(tmp_path, {"DISPLAY": free_display, "PATH": path})
    assert done.returncode == 1, done.stderr
    lines = error_lines(done.stderr)
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("error: Qt's xcb platform plugin cannot load: libxcb-icccm.so.4")
    assert lines[0].endswith("sudo apt-get install libxcb-icccm4 libxcb-keysyms1")
    assert done.stderr.strip() == lines[0]


# One list: the libraries Qt links, the README's install command, and what CI installs


def readme_packages() -> list[str]:
    """The packages of the README's install command (the block after ``<!-- ci: packages -->``)."""
    lines = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    start = lines.index("<!-- ci: packages -->")
    assert lines[start + 1].startswith("```")
    end = next(i for i in range(start + 2, len(lines)) if lines[i].startswith("```"))
    words = " ".join(lines[start + 2 : end]).replace("\\", " ").split()
    assert words[:3] == ["sudo", "apt-get", "install"]
    return words[3:]


def test_the_readme_lists_every_package_of_the_table_once() -> None:
    listed = readme_packages()
    assert len(listed) == len(set(listed))
    assert set(listed) == set(PACKAGES.values())


@pytest.mark.skipif(shutil.which("bash") is None, reason="CI's script is bash")
def test_ci_installs_the_readme_list() -> None:
    done = subprocess.run(
        [str(ROOT / ".ci" / "run"), "--qt-packages"],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    assert done.stdout.split() == readme_packages()


def test_ci_runs_the_app_on_the_xcb_platform_under_xvfb() -> None:
    script = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert "QT_QPA_PLATFORM=xcb xvfb-run" in script


def elf_needed(path: Path) -> list[str]:
    """The ``DT_NEEDED`` entries of a 64-bit little-endian ELF shared library."""
    data = path.read_bytes()
    assert data[:4] == b"\x7fELF"
    assert data[4:6] == b"\x02\x01", f"{path}: not 64-bit little-endian"
    section_offset = int.from_bytes(data[0x28:0x30], "little")
    entry_size, count = struct.unpack_from("<HH", data, 0x3A)
    sections = [
        struct.unpack_from("<IIQQQQIIQQ", data, section_offset + i * entry_size)
        for i in range(count)
    ]
    names: list[str] = []
    for section in sections:
        if section[1] != 6:  # SHT_DYNAMIC
            continue
        strings = sections[section[6]][4]  # sh_link: its string table; [4]: sh_offset
        for at in range(section[4], section[4] + section[5], 16):
            tag, value = struct.unpack_from("<qQ", data, at)
            if tag == 0:  # DT_NULL
                break
            if tag == 1:  # DT_NEEDED
                end = data.index(b"\0", strings + value)
                names.append(data[strings + value : end].decode())
    return names


def qt_libraries_loaded(modules_after) -> list[Path]:
    """The platform plugins fmviz uses, and PySide6's modules it imports."""
    pyside = Path(platform_check.importlib.util.find_spec("PySide6").origin).parent
    loaded = modules_after("import visualizer.ui.app")
    modules = sorted(name for name in loaded if name.startswith("PySide6.Qt"))
    assert "PySide6.QtWidgets" in modules
    plugins = pyside / "Qt" / "plugins" / "platforms"
    roots = [plugins / "libqxcb.so", plugins / "libqoffscreen.so"]
    for name in modules:
        roots += sorted(pyside.glob(f"{name.split('.')[1]}.*.so"))
    return roots


@pytest.mark.skipif(
    not LINUX or platform.machine() not in ("x86_64", "aarch64"), reason="Linux ELF wheels"
)
def test_the_table_is_what_pysides_qt_links(modules_after) -> None:
    """Every system library that PySide6's own libraries link, followed through the libraries
    PySide6 ships, is in ``PACKAGES`` (or the base system); and nothing else is."""
    roots = qt_libraries_loaded(modules_after)
    shiboken = Path(platform_check.importlib.util.find_spec("shiboken6").origin).parent
    shipped = {
        path.name: path
        for folder in (roots[0].parents[2] / "lib", roots[-1].parent, shiboken)
        for path in folder.glob("*.so*")
    }
    system: set[str] = set()
    seen: set[Path] = set()
    todo = list(roots)
    while todo:
        library = todo.pop()
        if library in seen:
            continue
        seen.add(library)
        for name in elf_needed(library):
            if name in shipped:
                todo.append(shipped[name])
            elif not name.startswith("ld-linux"):
                system.add(name)
    assert system - set(BASE_SYSTEM) == set(PACKAGES)


@pytest.mark.skipif(
    not LINUX or shutil.which("ldd") is None or shutil.which("dpkg") is None,
    reason="needs ldd and dpkg (Debian or Ubuntu)",
)
def test_the_table_names_the_packages_dpkg_says_hold_the_libraries() -> None:
    plugin = platform_check.plugin_file("xcb", {})
    assert plugin is not None
    found = {}
    for line in platform_check._ldd(plugin).splitlines():
        name, _, where = line.strip().partition(" => ")
        if name in PACKAGES and where.startswith("/"):
            found[name] = os.path.realpath(where.split(" (")[0])
    if not found:
        pytest.skip("none of the libraries is installed")
    # dpkg knows a file by the path its package installed it at: /lib/… or /usr/lib/…
    paths = sorted(
        {
            f"{prefix}{path.removeprefix('/usr')}"
            for path in found.values()
            for prefix in ("", "/usr")
        }
    )
    dpkg = shutil.which("dpkg")
    done = subprocess.run([dpkg, "-S", *paths], capture_output=True, text=True, check=False)
    owner = {}
    for line in done.stdout.splitlines():
        package, _, path = line.partition(": ")
        # Ubuntu 24.04's glib is libglib2.0-0t64, installed by the name libglib2.0-0 too.
        owner[path.removeprefix("/usr")] = package.split(":")[0].removesuffix("t64")
    for name, path in found.items():
        assert owner.get(path.removeprefix("/usr")) == PACKAGES[name], f"{name} ({path})"
