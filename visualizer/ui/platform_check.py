"""Before Qt loads: can its platform plugin start here? One ``error:`` line if not.

When Qt's platform plugin cannot start, Qt aborts the process (a core dump, exit 134) with a
message that may blame the wrong library. This module imports no Qt, so that the command line
can ask first and say what is missing, and how to install it:

- a system library the plugin links is missing (found with ``ldd``, where there is one): the
  libraries, and the Debian or Ubuntu packages that hold them (``PACKAGES``);
- ``DISPLAY`` names no X server this user can reach;
- there is no display at all (a ``--screenshot`` run then uses Qt's offscreen platform).

``PACKAGES`` is also the README's list of the system libraries Qt needs (a test keeps them
equal): every library that PySide6's own Qt libraries and the ``xcb`` and ``offscreen``
platform plugins link, with the package it comes in (found with ``dpkg -S`` on Debian 12).
"""

from __future__ import annotations

import ctypes
import importlib.util
import os
import shutil
import subprocess
import sys
from collections.abc import Iterable, MutableMapping
from pathlib import Path

# soname → the Debian and Ubuntu package that holds it. Ubuntu 24.04 and Debian 13 renamed
# libglib2.0-0 to libglib2.0-0t64, which apt also installs under the old name.
PACKAGES = {
    "libEGL.so.1": "libegl1",
    "libGL.so.1": "libgl1",
    "libX11-xcb.so.1": "libx11-xcb1",
    "libX11.so.6": "libx11-6",
    "libdbus-1.so.3": "libdbus-1-3",
    "libfontconfig.so.1": "libfontconfig1",
    "libfreetype.so.6": "libfreetype6",
    "libglib-2.0.so.0": "libglib2.0-0",
    "libgthread-2.0.so.0": "libglib2.0-0",
    "libxcb-cursor.so.0": "libxcb-cursor0",
    "libxcb-icccm.so.4": "libxcb-icccm4",
    "libxcb-image.so.0": "libxcb-image0",
    "libxcb-keysyms.so.1": "libxcb-keysyms1",
    "libxcb-randr.so.0": "libxcb-randr0",
    "libxcb-render-util.so.0": "libxcb-render-util0",
    "libxcb-render.so.0": "libxcb-render0",
    "libxcb-shape.so.0": "libxcb-shape0",
    "libxcb-shm.so.0": "libxcb-shm0",
    "libxcb-sync.so.1": "libxcb-sync1",
    "libxcb-util.so.1": "libxcb-util1",
    "libxcb-xfixes.so.0": "libxcb-xfixes0",
    "libxcb-xkb.so.1": "libxcb-xkb1",
    "libxcb.so.1": "libxcb1",
    "libxkbcommon-x11.so.0": "libxkbcommon-x11-0",
    "libxkbcommon.so.0": "libxkbcommon0",
}
# Linked too, but part of every Debian and Ubuntu system (and of Python's own needs).
BASE_SYSTEM = {
    "libc.so.6": "libc6",
    "libm.so.6": "libc6",
    "libdl.so.2": "libc6",
    "libpthread.so.0": "libc6",
    "libgcc_s.so.1": "libgcc-s1",
    "libstdc++.so.6": "libstdc++6",
    "libz.so.1": "zlib1g",
    "libzstd.so.1": "libzstd1",
}
CHECKED_PLATFORMS = ("xcb", "offscreen")
LDD_TIMEOUT_S = 10
NO_DISPLAY = (
    "no display to open the window on (DISPLAY is not set); use --screenshot PATH to save a "
    "picture of it, or fmviz export"
)
# xcb_connection_has_error's codes that say more than "cannot connect" (xcb.h).
XCB_CONN_CLOSED_PARSE_ERR = 5
XCB_CONN_CLOSED_INVALID_SCREEN = 6


def prepare(*, screenshot: bool, environ: MutableMapping[str, str] | None = None) -> str | None:
    """Check that Qt's platform plugin can start here, before Qt loads; None when it can.

    Otherwise the reason, as one line that says what to do. On a Linux machine with no
    display, a ``screenshot`` run is switched to Qt's offscreen platform (``QT_QPA_PLATFORM``
    is set in ``environ``, default ``os.environ``).
    """
    environ = os.environ if environ is None else environ
    if not sys.platform.startswith("linux"):
        return None
    display = environ.get("DISPLAY", "")
    chosen = environ.get("QT_QPA_PLATFORM", "")
    if not chosen and not display and not environ.get("WAYLAND_DISPLAY"):
        if not screenshot:
            return NO_DISPLAY
        environ["QT_QPA_PLATFORM"] = chosen = "offscreen"  # a screenshot needs no screen
    platform = qt_platform(environ)
    if platform not in CHECKED_PLATFORMS:
        return None  # Wayland, or a platform chosen by name: left to Qt
    if platform == "xcb" and not display:
        return (
            f"QT_QPA_PLATFORM={chosen} needs an X display, and DISPLAY is not set: start fmviz "
            "in the desktop session, or unset QT_QPA_PLATFORM and use --screenshot PATH"
        )
    missing = missing_libraries(_ldd(plugin_file(platform, environ)))
    if missing:
        return f"Qt's {platform} platform plugin cannot load: {install_advice(missing)}"
    if platform == "xcb":
        return x_server_problem(display)
    return None


def qt_platform(environ: MutableMapping[str, str]) -> str | None:
    """The platform plugin Qt will load: ``"xcb"``, ``"offscreen"``, another plugin's name,
    or None where that is Qt's choice (a Wayland session, a list of plugins to try)."""
    chosen = environ.get("QT_QPA_PLATFORM", "").strip()
    if chosen:
        return None if ";" in chosen else chosen.split(":", 1)[0].lower()
    if environ.get("XDG_SESSION_TYPE") == "wayland" and environ.get("WAYLAND_DISPLAY"):
        return None
    return "xcb" if environ.get("DISPLAY") else None


def plugin_file(platform: str, environ: MutableMapping[str, str]) -> Path | None:
    """The plugin's shared library that Qt will load, if it is where PySide6 keeps it (or in
    ``QT_QPA_PLATFORM_PLUGIN_PATH``); found without importing PySide6."""
    folders = []
    if environ.get("QT_QPA_PLATFORM_PLUGIN_PATH"):
        folders.append(Path(environ["QT_QPA_PLATFORM_PLUGIN_PATH"]))
    spec = importlib.util.find_spec("PySide6")
    if spec is not None and spec.submodule_search_locations:
        for location in spec.submodule_search_locations:
            folders.append(Path(location) / "Qt" / "plugins" / "platforms")
    for folder in folders:
        candidate = folder / f"libq{platform}.so"
        if candidate.is_file():
            return candidate
    return None


def missing_libraries(ldd_output: str) -> list[str]:
    """The libraries ``ldd`` reports as ``NAME => not found``, each once, in its order."""
    missing: list[str] = []
    for line in ldd_output.splitlines():
        name, arrow, where = line.strip().partition("=>")
        if arrow and where.strip() == "not found" and name.strip() not in missing:
            missing.append(name.strip())
    return missing


def install_advice(sonames: Iterable[str]) -> str:
    """``A and B are missing; …``: the command that installs them on Debian or Ubuntu."""
    sonames = list(sonames)
    known = {**BASE_SYSTEM, **PACKAGES}
    packages = list(dict.fromkeys(known[name] for name in sonames if name in known))
    unknown = [name for name in sonames if name not in known]
    said = f"{_joined(sonames)} {'is' if len(sonames) == 1 else 'are'} missing"
    if not packages:
        return f"{said}; install the {'package' if len(unknown) == 1 else 'packages'} that " + (
            "provides it" if len(unknown) == 1 else "provide them"
        )
    command = f"sudo apt-get install {' '.join(packages)}"
    if unknown:
        which = "the package that provides" if len(unknown) == 1 else "the packages that provide"
        command += f" (and {which} {_joined(unknown)})"
    return f"{said}; on Debian or Ubuntu: {command}"


def x_server_problem(display: str) -> str | None:
    """None when the X server of ``display`` accepts a connection from this user (tried with
    libxcb, as Qt does); else why not. None too where libxcb cannot be loaded."""
    try:
        xcb = ctypes.CDLL("libxcb.so.1")
    except OSError:
        return None  # the library check names it
    xcb.xcb_connect.restype = ctypes.c_void_p
    xcb.xcb_connect.argtypes = [ctypes.c_char_p, ctypes.c_void_p]
    xcb.xcb_connection_has_error.restype = ctypes.c_int
    xcb.xcb_connection_has_error.argtypes = [ctypes.c_void_p]
    xcb.xcb_disconnect.restype = None
    xcb.xcb_disconnect.argtypes = [ctypes.c_void_p]
    connection = xcb.xcb_connect(os.fsencode(display), None)
    try:
        failure = xcb.xcb_connection_has_error(connection)
    finally:
        xcb.xcb_disconnect(connection)  # also for the error connection xcb_connect returns
    if not failure:
        return None
    if failure == XCB_CONN_CLOSED_PARSE_ERR:
        why = "is not an X display name (e.g. :0)"
    elif failure == XCB_CONN_CLOSED_INVALID_SCREEN:
        why = "names a screen that X server does not have"
    else:
        why = "names no X server that is running and lets this user in"
    return (
        f"cannot open the window: DISPLAY={display} {why}; start fmviz in the desktop "
        "session, or run it with QT_QPA_PLATFORM=offscreen and --screenshot PATH"
    )


def _ldd(library: Path | None) -> str:
    """``ldd``'s report on ``library``; empty where there is no ``ldd`` or it fails."""
    ldd = shutil.which("ldd")
    if library is None or ldd is None:
        return ""
    try:
        done = subprocess.run(  # noqa: S603 (the system's ldd, on a file of PySide6's)
            [ldd, str(library)],
            capture_output=True,
            text=True,
            errors="replace",
            timeout=LDD_TIMEOUT_S,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return ""
    return done.stdout


def _joined(names: list[str]) -> str:
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"
