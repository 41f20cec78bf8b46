"""load_image and to_rgb: every colour mode, transparency, orientation, animation, refusals."""

from __future__ import annotations

import builtins
import io
import os
import re
import struct
import tracemalloc
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np
import pytest
from PIL import EpsImagePlugin, Image, ImageFile

from visualizer.core import images
from visualizer.core.images import BACKGROUND, MAX_PIXELS, ImageLoadError, load_image, to_rgb

RGB = tuple[int, int, int]
RED, GREEN, BLUE, BLACK, WHITE = (255, 0, 0), (0, 255, 0), (0, 0, 255), (0, 0, 0), (255, 255, 255)
LIMIT = f"the limit is {MAX_PIXELS // 1_000_000} megapixels"


# --- helpers ---------------------------------------------------------------------------------


def over_background(colour: RGB, alpha: int) -> RGB:
    """``colour`` with opacity ``alpha`` (0–255) over BACKGROUND, rounded to the nearest."""
    red, green, blue = (
        round((c * alpha + b * (255 - alpha)) / 255)
        for c, b in zip(colour, BACKGROUND, strict=True)
    )
    return red, green, blue


def grey(*values: int) -> list[RGB]:
    return [(value, value, value) for value in values]


def pixels(image: Image.Image) -> list[RGB]:
    """The pixels of an RGB image, row by row."""
    return [tuple(pixel) for pixel in np.asarray(image).reshape(-1, 3).tolist()]


def shown_name(path: Path) -> str:
    """How a message shows ``path``: as is, or with control characters escaped."""
    text = str(path)
    return text if text.isprintable() else repr(text)[1:-1]


def refusal(path: Path) -> str:
    """The reason load_image gives for refusing ``path``, once the message's form is checked."""
    with pytest.raises(ImageLoadError) as caught:
        load_image(path)
    message = str(caught.value)
    assert isinstance(caught.value, ValueError)
    assert message.isprintable(), f"not one clean line: {message!r}"
    prefix = f"{shown_name(path)}: "
    assert message.startswith(prefix), message
    return message[len(prefix) :]


def encoded(image: Image.Image, kind: str, **options: Any) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, kind, **options)
    return buffer.getvalue()


def noise(width: int, height: int, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_header_only(width: int, height: int) -> bytes:
    """A valid, tiny PNG that declares ``width``×``height`` RGB pixels."""
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", header)
        + png_chunk(b"IDAT", zlib.compress(b"\0" * 64))
        + png_chunk(b"IEND", b"")
    )


def gif_header_only(width: int, height: int) -> bytes:
    """A GIF whose screen and single frame declare ``width``×``height`` pixels."""
    screen = struct.pack("<HHBBB", width, height, 0, 0, 0)
    frame = b"," + struct.pack("<HHHHB", 0, 0, width, height, 0)
    return b"GIF89a" + screen + frame + b"\x02\x02\x44\x01\x00" + b";"


def bmp_header_only(width: int, height: int) -> bytes:
    """A 24-bit BMP that declares ``width``×``height`` pixels and holds 16 bytes of them."""
    info = struct.pack("<IiiHHIIiiII", 40, width, height, 1, 24, 0, 0, 2835, 2835, 0, 0)
    return b"BM" + struct.pack("<IHHI", 14 + 40 + 16, 0, 0, 14 + 40) + info + b"\0" * 16


def eps_text() -> bytes:
    return encoded(Image.new("RGB", (4, 4), RED), "EPS")


def eps_binary() -> bytes:
    """A DOS EPS file: a binary header in front of the PostScript."""
    postscript = eps_text()
    return b"\xc5\xd0\xd3\xc6" + struct.pack("<II", 30, len(postscript)) + b"\0" * 18 + postscript


def truncated(data: bytes) -> bytes:
    return data[: len(data) // 2]


# --- colour modes ----------------------------------------------------------------------------


def _palette(transparency: int | bytes | None = None) -> Image.Image:
    image = Image.frombytes("P", (3, 1), bytes([0, 1, 2]))
    image.putpalette([*RED, *BLUE, *GREEN])
    if transparency is not None:
        image.info["transparency"] = transparency
    return image


def _array(values: list[float], dtype: type) -> Image.Image:
    return Image.fromarray(np.array([values], dtype=dtype))


@dataclass(frozen=True)
class Case:
    """An image in ``mode`` (one row) and the RGB pixels it must become."""

    mode: str
    make: Callable[[], Image.Image]
    expected: list[RGB]


NAN, INF = float("nan"), float("inf")
CASES = {
    "L": Case("L", lambda: _array([0, 128, 255], np.uint8), grey(0, 128, 255)),
    "LA": Case(
        "LA",
        lambda: Image.frombytes("LA", (3, 1), bytes([50, 0, 50, 255, 200, 128])),
        [BACKGROUND, (50, 50, 50), over_background((200, 200, 200), 128)],
    ),
    "P": Case("P", _palette, [RED, BLUE, GREEN]),
    "P-transparent-index": Case("P", lambda: _palette(0), [BACKGROUND, BLUE, GREEN]),
    "P-alpha-palette": Case(
        "P", lambda: _palette(b"\x00\xff\x80"), [BACKGROUND, BLUE, over_background(GREEN, 128)]
    ),
    "RGB": Case(
        "RGB",
        lambda: Image.frombytes("RGB", (2, 1), bytes([1, 2, 3, 250, 128, 7])),
        [(1, 2, 3), (250, 128, 7)],
    ),
    "RGBA": Case(
        "RGBA",
        lambda: Image.frombytes(
            "RGBA", (3, 1), bytes([*RED, 0, 10, 200, 30, 255, 200, 100, 50, 128])
        ),
        [BACKGROUND, (10, 200, 30), over_background((200, 100, 50), 128)],
    ),
    "CMYK": Case(
        "CMYK",
        lambda: Image.frombytes(
            "CMYK", (4, 1), bytes([0, 0, 0, 0, 255, 0, 0, 0, 0, 255, 0, 0, 0, 0, 0, 255])
        ),
        [WHITE, (0, 255, 255), (255, 0, 255), BLACK],
    ),
    "1": Case(
        "1",
        lambda: Image.frombytes("1", (4, 1), bytes([0b1010_0000])),
        [WHITE, BLACK, WHITE, BLACK],
    ),
    # Scaled by 257: Pillow's own convert("L") would clip 32768 and 257 to 255.
    "I;16": Case("I;16", lambda: _array([65535, 32768, 0, 257], np.uint16), grey(255, 128, 0, 1)),
    # A dark 16-bit image stays dark (1000 / 257 = 3.9): scaled, not stretched to 0–255.
    "I;16-dark": Case("I;16", lambda: _array([1000, 2000, 514], np.uint16), grey(4, 8, 2)),
    # 32-bit values within 16 bits are scaled by 257 too, not stretched.
    "I-16-bit-range": Case("I", lambda: _array([1000, 2000, 65535], np.int32), grey(4, 8, 255)),
    # Beyond 16 bits: stretched from minimum to maximum (50000 / 200000 × 255 = 63.75).
    "I-beyond-16-bits": Case("I", lambda: _array([-50000, 0, 150000], np.int32), grey(0, 64, 255)),
    # Within [0, 1]: × 255, not stretched (0.25 × 255 = 63.75); NaN becomes 0.
    "F-unit-range": Case(
        "F", lambda: _array([0.25, 0.5, 0.75, NAN], np.float32), grey(64, 128, 191, 0)
    ),
    "F-wide-range": Case(
        "F", lambda: _array([-5.0, 0.0, 5.0, 2.5, NAN], np.float32), grey(0, 128, 255, 191, 0)
    ),
    "F-infinities": Case(
        "F", lambda: _array([0.0, 0.5, INF, -INF, NAN], np.float32), grey(0, 128, 255, 0, 0)
    ),
    "F-all-nan": Case("F", lambda: _array([NAN, NAN], np.float32), grey(0, 0)),
}

# (case, file suffix, save options): every case as at least one file Pillow reopens in its mode.
FILES = [
    ("L", "png", {}),
    ("L", "bmp", {}),
    ("LA", "png", {}),
    ("P", "png", {}),
    ("P", "gif", {}),
    ("P-transparent-index", "png", {"transparency": 0}),
    ("P-transparent-index", "gif", {"transparency": 0}),
    ("P-alpha-palette", "png", {"transparency": b"\x00\xff\x80"}),
    ("RGB", "png", {}),
    ("RGB", "bmp", {}),
    ("RGB", "tif", {}),
    ("RGBA", "png", {}),
    ("RGBA", "tif", {}),
    ("CMYK", "tif", {}),
    ("1", "png", {}),
    ("1", "bmp", {}),
    ("I;16", "png", {}),
    ("I;16", "tif", {}),
    ("I;16-dark", "png", {}),
    ("I-16-bit-range", "tif", {}),
    ("I-beyond-16-bits", "tif", {}),
    ("F-unit-range", "tif", {}),
    ("F-wide-range", "tif", {}),
    ("F-infinities", "tif", {}),
]


@pytest.mark.parametrize("name", list(CASES))
def test_to_rgb_converts_every_mode(name: str) -> None:
    case = CASES[name]
    image = case.make()
    assert image.mode == case.mode
    converted = to_rgb(image)
    assert converted.mode == "RGB"
    assert converted.size == (len(case.expected), 1)
    assert pixels(converted) == case.expected


@pytest.mark.parametrize(("name", "suffix", "options"), FILES)
def test_load_image_converts_every_mode(
    tmp_path: Path, name: str, suffix: str, options: dict[str, Any]
) -> None:
    case = CASES[name]
    path = tmp_path / f"{name}.{suffix}"
    case.make().save(path, **options)
    with Image.open(path) as reopened:  # the file really holds an image in that mode
        assert reopened.mode == case.mode
    loaded = load_image(path)
    assert loaded.mode == "RGB"
    assert loaded.size == (len(case.expected), 1)
    assert pixels(loaded) == case.expected


def test_to_rgb_leaves_its_argument_alone() -> None:
    image = CASES["RGB"].make()
    converted = to_rgb(image)
    converted.putpixel((0, 0), RED)
    assert pixels(image) == CASES["RGB"].expected


@pytest.mark.parametrize(
    ("image", "key", "expected"),
    [
        pytest.param(
            Image.frombytes("RGB", (2, 1), bytes([1, 2, 3, 4, 5, 6])),
            (1, 2, 3),
            [BACKGROUND, (4, 5, 6)],
            id="RGB",
        ),
        pytest.param(_array([1000, 65535], np.uint16), 1000, [BACKGROUND, WHITE], id="I;16"),
        pytest.param(
            Image.frombytes("1", (2, 1), bytes([0b1000_0000])), 255, [BACKGROUND, BLACK], id="1"
        ),
    ],
)
def test_colour_key_transparency_is_flattened(
    image: Image.Image, key: int | RGB, expected: list[RGB]
) -> None:
    """A PNG tRNS colour key (info["transparency"]) makes the pixels of that value transparent."""
    image.info["transparency"] = key
    assert pixels(to_rgb(image)) == expected


def test_colour_key_of_a_png_file_is_flattened(tmp_path: Path) -> None:
    path = tmp_path / "keyed.png"
    Image.frombytes("RGB", (2, 1), bytes([1, 2, 3, 4, 5, 6])).save(path, transparency=(1, 2, 3))
    with Image.open(path) as reopened:
        assert reopened.info["transparency"] == (1, 2, 3)
    assert pixels(load_image(path)) == [BACKGROUND, (4, 5, 6)]


# --- transparency ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("alpha", "expected"),
    [
        (0, BACKGROUND),
        (255, (10, 200, 30)),
        # 10 × 128/255 + 124 × 127/255 = 66.8; 200 → 158.2; 30 → 66.9
        (128, (67, 158, 67)),
        # 10 × 64/255 + 124 × 191/255 = 95.4; 137.1; 85.4
        (64, (95, 137, 85)),
        (254, (10, 200, 30)),
    ],
)
def test_alpha_is_composited_on_background(alpha: int, expected: RGB) -> None:
    image = Image.frombytes("RGBA", (1, 1), bytes([10, 200, 30, alpha]))
    assert pixels(to_rgb(image)) == [expected]


def test_background_is_the_imagenet_mean() -> None:
    """The background normalises to about zero: (0.485, 0.456, 0.406) × 255."""
    assert BACKGROUND == (124, 116, 104)


def test_transparent_png_loads_with_background(tmp_path: Path) -> None:
    path = tmp_path / "holes.png"
    CASES["RGBA"].make().save(path)
    assert pixels(load_image(path)) == CASES["RGBA"].expected


def test_gif_transparent_index_loads_as_background(tmp_path: Path) -> None:
    path = tmp_path / "holes.gif"
    _palette().save(path, transparency=1)
    with Image.open(path) as reopened:
        assert "transparency" in reopened.info
    assert pixels(load_image(path)) == [RED, BACKGROUND, GREEN]


# --- EXIF orientation ------------------------------------------------------------------------


def _corner_image() -> Image.Image:
    """40×20 black with a red 10×10 square at the top left."""
    image = Image.new("RGB", (40, 20), BLACK)
    image.paste(RED, (0, 0, 10, 10))
    return image


# orientation → (size shown, centre of the red square as shown)
ORIENTATIONS = {
    6: ((20, 40), (15, 5)),  # turned 90° clockwise: the top left goes to the top right
    8: ((20, 40), (5, 35)),  # turned 90° anticlockwise: the top left goes to the bottom left
    3: ((40, 20), (35, 15)),  # turned 180°: the top left goes to the bottom right
}


@pytest.mark.parametrize("orientation", list(ORIENTATIONS))
@pytest.mark.parametrize(
    ("suffix", "options", "tolerance"),
    [
        pytest.param("jpg", {"quality": 100, "subsampling": 0}, 12, id="jpeg"),
        pytest.param("png", {}, 0, id="png"),
        pytest.param("webp", {"lossless": True}, 0, id="webp"),
    ],
)
def test_exif_orientation_is_applied(
    tmp_path: Path, suffix: str, options: dict[str, Any], tolerance: int, orientation: int
) -> None:
    exif = Image.Exif()
    exif[0x0112] = orientation
    path = tmp_path / f"turned.{suffix}"
    _corner_image().save(path, exif=exif.tobytes(), **options)
    with Image.open(path) as raw:
        assert raw.size == (40, 20)
        assert raw.getexif()[0x0112] == orientation
    size, (x, y) = ORIENTATIONS[orientation]
    loaded = load_image(path)
    assert loaded.mode == "RGB"
    assert loaded.size == size
    array = np.asarray(loaded).astype(int)
    assert np.abs(array[y, x] - RED).max() <= tolerance
    width, height = size
    corners = {(5, 5), (width - 5, 5), (5, height - 5), (width - 5, height - 5)}
    for cx, cy in corners - {(x, y)}:
        assert np.abs(array[cy, cx] - BLACK).max() <= tolerance, (cx, cy)


def test_every_listed_format_can_be_opened() -> None:
    """FORMATS names Pillow's opening plugins (MPO is no such plugin: JPEG's opens MPO files);
    HEIF's is pillow-heif's, registered at the first HEIF file."""
    Image.init()
    assert set(images.FORMATS) - set(Image.OPEN) <= {"AVIF", "HEIF"}  # AVIF: from Pillow 11.2
    assert images._heif_opener() is None  # pillow-heif is a dependency
    assert set(images.FORMATS) - set(Image.OPEN) <= {"AVIF"}


def test_formats_pillow_lacks_are_skipped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A listed format this Pillow cannot open is passed over, not a KeyError from Image.open."""
    monkeypatch.setattr(images, "FORMATS", ("MPO", "NO-SUCH-FORMAT", *images.FORMATS))
    path = tmp_path / "plain.png"
    CASES["RGB"].make().save(path)
    assert pixels(load_image(path)) == CASES["RGB"].expected


def test_mpo_gives_its_first_picture(tmp_path: Path) -> None:
    first, second, _ = _frames()
    path = tmp_path / "stereo.mpo"
    first.save(path, "MPO", save_all=True, append_images=[second], quality=100, subsampling=0)
    with Image.open(path) as reopened:
        assert (reopened.format, reopened.n_frames) == ("MPO", 2)
    loaded = np.asarray(load_image(path)).astype(int)
    assert np.abs(loaded - np.asarray(first)).max() <= 12


def test_no_orientation_leaves_the_image_as_is(tmp_path: Path) -> None:
    path = tmp_path / "plain.bmp"
    _corner_image().save(path)
    assert pixels(load_image(path)) == pixels(_corner_image())


# --- animation -------------------------------------------------------------------------------


def _frames() -> list[Image.Image]:
    first = Image.new("RGB", (8, 6), RED)
    first.paste(WHITE, (4, 0, 8, 6))
    return [first, Image.new("RGB", (8, 6), GREEN), Image.new("RGB", (8, 6), BLUE)]


@pytest.mark.parametrize(
    ("suffix", "options"),
    [
        pytest.param("gif", {}, id="gif"),
        pytest.param("png", {}, id="apng"),
        pytest.param("webp", {"lossless": True}, id="webp"),
    ],
)
def test_animation_gives_its_first_frame(
    tmp_path: Path, suffix: str, options: dict[str, Any]
) -> None:
    first, *rest = _frames()
    path = tmp_path / f"animated.{suffix}"
    first.save(path, save_all=True, append_images=rest, duration=100, loop=0, **options)
    with Image.open(path) as reopened:
        assert reopened.n_frames == 3
    loaded = load_image(path)
    assert loaded.size == (8, 6)
    assert pixels(loaded) == pixels(first)


# --- refusals --------------------------------------------------------------------------------

TEXT = b"Shopping list\n- eggs\n- flour\n"
SVG = b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"><rect/></svg>\n'
SVG_WITH_PROLOG = b'\n  <?xml version="1.0"?>\n<!-- a drawing -->\n' + SVG.upper()
PDF = b"%PDF-1.7\n1 0 obj\n<< /Type /Catalog >>\nendobj\ntrailer\n<< /Root 1 0 R >>\n%%EOF\n"
POSTSCRIPT = b"%!PS-Adobe-3.0\n/Times-Roman findfont 12 scalefont setfont\nshowpage\n"
RANDOM = np.random.default_rng(7).bytes(4096)

# (file name, contents, what the reason must say)
REFUSALS = [
    pytest.param("empty.png", lambda: b"", r"^the file is empty$", id="empty"),
    pytest.param(
        "cut.jpg",
        lambda: truncated(encoded(noise(64, 64), "JPEG")),
        r"^truncated or corrupt JPEG data \(image file is truncated",
        id="truncated-jpeg",
    ),
    pytest.param(
        "cut.png",
        lambda: truncated(encoded(noise(64, 64), "PNG")),
        r"^truncated or corrupt PNG data \(.*truncated",
        id="truncated-png",
    ),
    pytest.param("noise.jpg", lambda: RANDOM, r"^not an image \(unrecognised", id="random"),
    pytest.param("list.txt", lambda: TEXT, r"^not an image", id="text"),
    pytest.param("logo.svg", lambda: SVG, r"^SVG is a vector format", id="svg"),
    pytest.param("logo.png", lambda: SVG_WITH_PROLOG, r"^SVG is a vector", id="svg-prolog"),
    pytest.param("paper.pdf", lambda: PDF, r"\bPDF\b.*not supported", id="pdf"),
    pytest.param(
        "page.ps",
        lambda: POSTSCRIPT,
        r"\bPostScript\b.*not supported",
        id="postscript",
    ),
    pytest.param(
        "figure.eps",
        eps_text,
        r"\b(EPS|PostScript)\b.*not supported",
        id="eps",
    ),
    pytest.param(
        "figure-dos.eps",
        eps_binary,
        r"^PostScript and PDF are not supported",
        id="eps-binary",
    ),
    pytest.param(
        "icon.xbm",
        lambda: encoded(Image.new("1", (8, 8)), "XBM"),
        r"^XBM images are not supported; use PNG",
        id="unsupported-format",
    ),
]


@pytest.fixture
def no_ghostscript(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Any attempt to run Ghostscript or to decode EPS is recorded, then fails."""
    attempts: list[str] = []

    def refuse(*args: object, **kwargs: object) -> None:
        attempts.append(repr(args))
        raise AssertionError("EPS handed to Ghostscript")

    monkeypatch.setattr(EpsImagePlugin, "Ghostscript", refuse)
    monkeypatch.setattr(EpsImagePlugin.EpsImageFile, "load", refuse)
    monkeypatch.setattr(EpsImagePlugin, "gs_binary", "gs")  # as if Ghostscript were installed
    return attempts


@pytest.mark.parametrize(("name", "contents", "reason"), REFUSALS)
def test_refusals(
    tmp_path: Path,
    no_ghostscript: list[str],
    name: str,
    contents: Callable[[], bytes],
    reason: str,
) -> None:
    path = tmp_path / name
    path.write_bytes(contents())
    said = refusal(path)
    assert re.search(reason, said), f"{said!r} does not match {reason!r}"
    assert no_ghostscript == []


def test_missing_file(tmp_path: Path) -> None:
    assert refusal(tmp_path / "nowhere.jpg") == "no such file"


def test_folder(tmp_path: Path) -> None:
    folder = tmp_path / "photos.jpg"
    folder.mkdir()
    assert refusal(folder) == "is a folder, not an image"


@pytest.mark.skipif(
    not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root reads any file regardless"
)
def test_unreadable_file(tmp_path: Path) -> None:
    path = tmp_path / "secret.jpg"
    path.write_bytes(encoded(noise(8, 8), "JPEG"))
    path.chmod(0)
    try:
        assert refusal(path) == "permission denied"
    finally:
        path.chmod(0o600)


def test_permission_error_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The same refusal where the tests run as root: opening the file raises PermissionError."""
    path = tmp_path / "secret.jpg"
    path.write_bytes(encoded(noise(8, 8), "JPEG"))
    real_open = builtins.open

    def denied(file: Any, *args: Any, **kwargs: Any) -> IO[Any]:
        if Path(os.fsdecode(file)) == path:
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", denied)
    assert refusal(path) == "permission denied"


# --- decompression bombs ---------------------------------------------------------------------


@pytest.fixture
def no_decoding(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Decoding pixels (load, a decoder) is recorded, then fails; Pillow's plugins are loaded."""
    Image.init()
    calls: list[str] = []

    def refuse(name: str) -> Callable[..., None]:
        def refused(*args: object, **kwargs: object) -> None:
            calls.append(name)
            raise AssertionError(f"{name} called: pixels are being decoded")

        return refused

    monkeypatch.setattr(ImageFile.ImageFile, "load", refuse("ImageFile.load"))
    monkeypatch.setattr(Image.Image, "load", refuse("Image.load"))
    monkeypatch.setattr(Image, "_getdecoder", refuse("Image._getdecoder"))
    return calls


BOMBS = [
    pytest.param("bomb.png", png_header_only, id="png"),
    pytest.param("bomb.gif", gif_header_only, id="gif"),
    pytest.param("bomb.bmp", bmp_header_only, id="bmp"),
]


def _refused_cheaply(path: Path) -> str:
    """The reason ``path`` is refused, checking that Python allocated under 10 MB meanwhile."""
    tracemalloc.start()
    try:
        reason = refusal(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 10_000_000
    return reason


@pytest.mark.parametrize(("name", "header"), BOMBS)
def test_decompression_bomb_is_refused_undecoded(
    tmp_path: Path, no_decoding: list[str], name: str, header: Callable[[int, int], bytes]
) -> None:
    path = tmp_path / name
    path.write_bytes(header(30000, 30000))
    assert path.stat().st_size < 200
    reason = _refused_cheaply(path)
    assert reason == f"declares far more pixels than an image should ({LIMIT})"
    assert no_decoding == []


@pytest.mark.parametrize(("name", "header"), BOMBS)
def test_our_limit_is_below_pillows(
    tmp_path: Path, no_decoding: list[str], name: str, header: Callable[[int, int], bytes]
) -> None:
    """12000×12000 only makes Pillow warn (under twice its limit): our own check refuses it."""
    assert MAX_PIXELS < 12000 * 12000
    assert 2 * Image.MAX_IMAGE_PIXELS > 12000 * 12000  # type: ignore[operator]
    path = tmp_path / name
    path.write_bytes(header(12000, 12000))
    assert _refused_cheaply(path) == f"12000×12000 pixels is 144 megapixels; {LIMIT}"
    assert no_decoding == []


@pytest.mark.parametrize(("name", "header"), BOMBS)
def test_bomb_is_refused_without_pillows_limit(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    no_decoding: list[str],
    name: str,
    header: Callable[[int, int], bytes],
) -> None:
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", None)
    path = tmp_path / name
    path.write_bytes(header(30000, 30000))
    assert _refused_cheaply(path) == f"30000×30000 pixels is 900 megapixels; {LIMIT}"
    assert no_decoding == []


def test_limit_is_inclusive(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """MAX_PIXELS pixels are allowed, one more is not (checked with a limit of 12 pixels)."""
    monkeypatch.setattr(images, "MAX_PIXELS", 12)
    at_limit, beyond = tmp_path / "4x3.gif", tmp_path / "13x1.gif"
    _palette().resize((4, 3)).save(at_limit)
    _palette().resize((13, 1)).save(beyond)
    assert load_image(at_limit).size == (4, 3)
    assert refusal(beyond) == "13×1 pixels is 0 megapixels; the limit is 0 megapixels"


# --- messages --------------------------------------------------------------------------------

ODD_NAMES = ["new\nline", "carriage\rreturn", "tab\tbell\x07escape\x1b", "del\x7f"]


@pytest.mark.parametrize("odd", ODD_NAMES)
def test_odd_names_give_one_line_missing(tmp_path: Path, odd: str) -> None:
    path = tmp_path / f"{odd}.jpg"
    assert refusal(path) == "no such file"  # refusal() checks the name is shown escaped


@pytest.mark.parametrize("odd", ODD_NAMES)
def test_odd_names_give_one_line_corrupt(tmp_path: Path, odd: str) -> None:
    path = tmp_path / f"{odd}.jpg"
    path.write_bytes(truncated(encoded(noise(32, 32), "JPEG")))
    assert refusal(path).startswith("truncated or corrupt JPEG data")


@pytest.mark.parametrize("odd", ODD_NAMES)
def test_odd_names_give_one_line_folder(tmp_path: Path, odd: str) -> None:
    path = tmp_path / odd
    path.mkdir()
    assert refusal(path) == "is a folder, not an image"


def test_odd_names_give_one_line_not_an_image(tmp_path: Path) -> None:
    path = tmp_path / "two\nlines.png"
    path.write_bytes(TEXT)
    assert refusal(path).startswith("not an image")


def test_error_is_a_value_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no such file"):
        load_image(tmp_path / "nowhere.png")


def test_accepts_str_paths(tmp_path: Path) -> None:
    path = tmp_path / "plain.gif"
    _palette().save(path)
    assert pixels(load_image(str(path))) == [RED, BLUE, GREEN]


# --- file handles ----------------------------------------------------------------------------


@pytest.fixture
def opened_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[list[IO[Any]]]:
    """Every file under ``tmp_path`` opened (by Pillow or pathlib) while the test runs."""
    files: list[IO[Any]] = []
    real_open = builtins.open

    def spy(file: Any, *args: Any, **kwargs: Any) -> IO[Any]:
        handle = real_open(file, *args, **kwargs)
        if isinstance(file, (str, bytes, os.PathLike)) and Path(os.fsdecode(file)).is_relative_to(
            tmp_path
        ):
            files.append(handle)
        return handle

    monkeypatch.setattr(builtins, "open", spy)
    monkeypatch.setattr(io, "open", spy)
    yield files
    for handle in files:
        handle.close()


def _write_noise(path: Path) -> None:
    noise(16, 16).save(path)


def _write_animated(path: Path) -> None:
    first, *rest = _frames()
    first.save(path, save_all=True, append_images=rest)


HANDLES = [
    pytest.param("good.jpg", _write_noise, True, id="jpeg"),
    pytest.param("animated.gif", _write_animated, True, id="animated-gif"),
    pytest.param("good.png", _write_noise, True, id="png"),
    pytest.param("animated.png", _write_animated, True, id="animated-png"),
    pytest.param(
        "cut.jpg",
        lambda path: path.write_bytes(truncated(encoded(noise(64, 64), "JPEG"))),
        False,
        id="truncated-jpeg",
    ),
    pytest.param(
        "bomb.gif", lambda path: path.write_bytes(gif_header_only(30000, 30000)), False, id="bomb"
    ),
    pytest.param("list.txt", lambda path: path.write_bytes(TEXT), False, id="text"),
    pytest.param(
        "icon.xbm",
        lambda path: Image.new("1", (8, 8)).save(path),
        False,
        id="unsupported",
    ),
]


@pytest.mark.parametrize(("name", "write", "readable"), HANDLES)
def test_file_is_closed_afterwards(
    tmp_path: Path,
    opened_files: list[IO[Any]],
    name: str,
    write: Callable[[Path], None],
    readable: bool,
) -> None:
    path = tmp_path / name
    write(path)
    opened_files.clear()
    if readable:
        image = load_image(path)
        assert image.mode == "RGB"
        assert getattr(image, "fp", None) is None
    else:
        refusal(path)
    assert opened_files, "the spy saw no file opened"
    assert all(handle.closed for handle in opened_files)


def test_a_16_bit_png_with_a_colour_key_is_flattened(tmp_path: Path) -> None:
    # Pillow cuts 16-bit RGB to 8 bits but reports the tRNS key in 16-bit units.
    rows = b"".join(
        b"\0" + struct.pack(">6H", 0xFFFF, 0, 0, 0, 0xFFFF, 0)  # red, then green
        for _ in range(2)
    )
    png = (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", struct.pack(">IIBBBBB", 2, 2, 16, 2, 0, 0, 0))
        + png_chunk(b"tRNS", struct.pack(">3H", 0xFFFF, 0, 0))  # red is transparent
        + png_chunk(b"IDAT", zlib.compress(rows))
        + png_chunk(b"IEND", b"")
    )
    path = tmp_path / "deep.png"
    path.write_bytes(png)
    image = load_image(path)
    assert image.getpixel((0, 0)) == BACKGROUND
    assert image.getpixel((1, 0)) == (0, 255, 0)


def test_a_pipe_is_refused_without_waiting(tmp_path: Path) -> None:
    pipe = tmp_path / "pipe.png"
    os.mkfifo(pipe)
    with pytest.raises(ImageLoadError, match=r"pipe\.png: not a regular file$"):
        load_image(pipe)
