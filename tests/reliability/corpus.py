"""A corpus of broken and awkward inputs, written into a folder: images and checkpoints.

Every entry says what it must give, independently of fmviz's code: a good image the RGB picture
that reading it must give (built here pixel by pixel, or decoded by Pillow alone), a bad one a
pattern for the reason of its refusal. The same corpus goes through the API, ``fmviz export``
and the window (tests/reliability and tests/ui/test_bad_input.py).

Some good images have names a shell would run (``$(touch pwned).jpg``): no entry point may hand
a path to a shell, so a file named ``PWNED`` in the working folder afterwards is a failure. The
malicious checkpoints create ``Corpus.marker`` if their payload ever runs.
"""

from __future__ import annotations

import functools
import io
import os
import struct
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

RGB = tuple[int, int, int]
RED, GREEN, BLUE = (255, 0, 0), (0, 255, 0), (0, 0, 255)
BLACK, WHITE, GREY = (0, 0, 0), (255, 255, 255), (128, 128, 128)
CYAN, MAGENTA = (0, 255, 255), (255, 0, 255)
# Transparent pixels are shown over the ImageNet mean colour, (0.485, 0.456, 0.406) × 255.
IMAGENET_MEAN = (124, 116, 104)
PWNED = "pwned"  # what the shell-like file names would create in the working folder, if run
SHELL_NAMES = (f"$(touch {PWNED}).jpg", f"; touch {PWNED} .jpg", f"`touch {PWNED}`.png")
NAME_MAX = 255  # bytes in a file name on Linux file systems
MARKER = "payload-ran"  # what a malicious checkpoint's payload creates, if it ever runs
ROOT_READS_ANYTHING = (
    "running as root: a file without read permission is readable all the same, so there is "
    "no unreadable file to test with"
)


def running_as_root() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0


# --- pictures and encodings ------------------------------------------------------------------


def encoded(image: Image.Image, kind: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, kind, **options)
    return buffer.getvalue()


def decoded(data: bytes) -> Image.Image:
    """What Pillow alone makes of ``data``, as RGB (for formats fmviz has no say in)."""
    with Image.open(io.BytesIO(data)) as image:
        return image.convert("RGB")


def picture(width: int, height: int, *boxes: tuple[RGB, tuple[int, int, int, int]]) -> Image.Image:
    """A black picture with each ``(colour, (left, top, right, bottom))`` box painted."""
    image = Image.new("RGB", (width, height), BLACK)
    for colour, box in boxes:
        image.paste(colour, box)
    return image


def row(*colours: RGB) -> Image.Image:
    """A one-pixel-high picture of ``colours``."""
    return Image.frombytes("RGB", (len(colours), 1), bytes(c for colour in colours for c in colour))


def noise(width: int, height: int, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8), "RGB")


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_of(width: int, height: int, depth: int, colour_type: int, rows: bytes) -> bytes:
    """A PNG written chunk by chunk (``rows``: the filtered scanlines)."""
    header = struct.pack(">IIBBBBB", width, height, depth, colour_type, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", header)
        + png_chunk(b"IDAT", zlib.compress(rows))
        + png_chunk(b"IEND", b"")
    )


def png_bomb() -> bytes:
    """A valid 4-kilobyte-or-so PNG that declares 40000×40000 RGB pixels."""
    return png_of(40_000, 40_000, 8, 2, b"\0" * 4096)


def png_16_bit() -> bytes:
    """2×1 16-bit greyscale: 65535 (white), then 32896 = 128 × 257 (grey 128)."""
    return png_of(2, 1, 16, 0, b"\0" + struct.pack(">2H", 65535, 32896))


def cmyk_jpeg() -> bytes:
    """16×8 CMYK: pure cyan on the left half, pure magenta on the right."""
    image = Image.new("CMYK", (16, 8), (255, 0, 0, 0))
    image.paste((0, 255, 0, 0), (8, 0, 16, 8))
    return encoded(image, "JPEG", quality=100)


def palette_png_with_transparency() -> bytes:
    """4×1 palette PNG: red, a transparent white, green, blue."""
    image = Image.frombytes("P", (4, 1), bytes([0, 1, 2, 3]))
    image.putpalette([*RED, *WHITE, *GREEN, *BLUE])
    return encoded(image, "PNG", transparency=bytes([255, 0, 255, 255]))


def animated_gif() -> bytes:
    """Three 8×6 frames: red, then green, then blue."""
    first, *rest = (Image.new("RGB", (8, 6), colour) for colour in (RED, GREEN, BLUE))
    return encoded(first, "GIF", save_all=True, append_images=rest, duration=100, loop=0)


def exif_rotated_jpeg() -> bytes:
    """Stored 40×20 with a red square at the top left, EXIF orientation 6 (turn 90° clockwise
    to show): shown 20×40 with the square at the top right."""
    exif = Image.Exif()
    exif[0x0112] = 6
    stored = picture(40, 20, (RED, (0, 0, 10, 10)))
    return encoded(stored, "JPEG", quality=100, subsampling=0, exif=exif.tobytes())


def truncated(data: bytes) -> bytes:
    return data[: len(data) // 2]


HTML = b"<!DOCTYPE html>\n<html><head><title>cat.png</title></head><body>404</body></html>\n"
TEXT = b"Shopping list\n- eggs\n- flour\n"
PDF = b"%PDF-1.7\n1 0 obj\n<< /Type /Catalog >>\nendobj\ntrailer\n<< /Root 1 0 R >>\n%%EOF\n"
LONG_NAME = "l" * (NAME_MAX - len(".png") - 1) + ".png"  # 254 bytes: one short of NAME_MAX


# --- the image corpus ------------------------------------------------------------------------


@dataclass(frozen=True)
class ImageSpec:
    """How to make one corpus entry, and what reading it must give.

    ``reason``: a regex the reason of the refusal matches (None: a good image, which must read
    as ``expected()`` within ``tolerance`` per channel). ``vanishes``: there when listed, gone
    when read (each entry point arranges that). ``unreadable``: only where reading permissions
    mean something (not as root).
    """

    key: str
    name: str | bytes
    make: Callable[[Path], object]
    reason: str | None = None
    expected: Callable[[], Image.Image] | None = None
    tolerance: int = 0
    vanishes: bool = False
    unreadable: bool = False


def data(content: Callable[[], bytes]) -> Callable[[Path], object]:
    return lambda path: path.write_bytes(content())


def unreadable(content: Callable[[], bytes]) -> Callable[[Path], object]:
    def make(path: Path) -> None:
        path.write_bytes(content())
        path.chmod(0)

    return make


IMAGES: tuple[ImageSpec, ...] = (
    # Good, if awkward.
    ImageSpec(
        "plain",
        "plain.png",
        data(lambda: encoded(picture(32, 24, (BLUE, (16, 0, 32, 24))), "PNG")),
        expected=lambda: picture(32, 24, (BLUE, (16, 0, 32, 24))),
    ),
    ImageSpec(
        "one-pixel",
        "dot.png",
        data(lambda: encoded(row(GREEN), "PNG")),
        expected=lambda: row(GREEN),
    ),
    ImageSpec(
        "very-wide",
        "wide.png",
        data(lambda: encoded(picture(3000, 2, (RED, (0, 0, 1500, 2))), "PNG")),
        expected=lambda: picture(3000, 2, (RED, (0, 0, 1500, 2))),
    ),
    ImageSpec(
        "very-tall",
        "tall.png",
        data(lambda: encoded(picture(2, 3000, (BLUE, (0, 1000, 2, 3000))), "PNG")),
        expected=lambda: picture(2, 3000, (BLUE, (0, 1000, 2, 3000))),
    ),
    ImageSpec("16-bit", "deep.png", data(png_16_bit), expected=lambda: row(WHITE, GREY)),
    ImageSpec(
        "cmyk",
        "cmyk.jpg",
        data(cmyk_jpeg),
        expected=lambda: picture(16, 8, (CYAN, (0, 0, 8, 8)), (MAGENTA, (8, 0, 16, 8))),
        tolerance=8,
    ),
    ImageSpec(
        "palette-transparency",
        "palette.png",
        data(palette_png_with_transparency),
        expected=lambda: row(RED, IMAGENET_MEAN, GREEN, BLUE),
    ),
    ImageSpec(
        "animated-gif",
        "animated.gif",
        data(animated_gif),
        expected=lambda: Image.new("RGB", (8, 6), RED),
    ),
    ImageSpec(
        "exif-rotated",
        "turned.jpg",
        data(exif_rotated_jpeg),
        expected=lambda: picture(20, 40, (RED, (10, 0, 20, 10))),
        tolerance=8,
    ),
    ImageSpec(
        "long-name",
        LONG_NAME,
        data(lambda: encoded(Image.new("RGB", (6, 4), MAGENTA), "PNG")),
        expected=lambda: Image.new("RGB", (6, 4), MAGENTA),
    ),
    ImageSpec(
        "non-utf-8-name",
        b"caf\xe9 \xff.png",
        data(lambda: encoded(Image.new("RGB", (5, 5), BLUE), "PNG")),
        expected=lambda: Image.new("RGB", (5, 5), BLUE),
    ),
    *(
        ImageSpec(
            f"shell-name-{index}",
            name,
            data(lambda kind=kind: encoded(noise(12, 10, seed=3), kind, quality=95)),
            expected=lambda kind=kind: decoded(encoded(noise(12, 10, seed=3), kind, quality=95)),
        )
        for index, name in enumerate(SHELL_NAMES)
        for kind in ["PNG" if name.endswith(".png") else "JPEG"]
    ),
    # Bad.
    ImageSpec(
        "truncated-jpeg",
        "cut.jpg",
        data(lambda: truncated(encoded(noise(64, 64, seed=1), "JPEG"))),
        reason=r"^truncated or corrupt JPEG data \(",
    ),
    ImageSpec(
        "truncated-png",
        "cut.png",
        data(lambda: truncated(encoded(noise(64, 64, seed=2), "PNG"))),
        reason=r"^truncated or corrupt PNG data \(",
    ),
    ImageSpec("zero-bytes", "empty.jpg", data(lambda: b""), reason=r"^the file is empty$"),
    ImageSpec("text-as-jpg", "notes.jpg", data(lambda: TEXT), reason=r"^not an image \("),
    ImageSpec("html-as-png", "page.png", data(lambda: HTML), reason=r"^not an image \("),
    ImageSpec(
        "pdf", "paper.pdf", data(lambda: PDF), reason=r"^PostScript and PDF are not supported"
    ),
    ImageSpec(
        "decompression-bomb",
        "bomb.png",
        data(png_bomb),
        reason=r"^declares far more pixels than an image should \(the limit is \d+ megapixels\)$",
    ),
    ImageSpec(
        "folder-named-jpg",
        "x.jpg",
        lambda path: path.mkdir(),
        reason=r"^is a folder, not an image$",
    ),
    ImageSpec(
        "dangling-symlink",
        "dangling.jpg",
        lambda path: path.symlink_to(path.with_name("nowhere.jpg")),
        reason=r"^no such file$",
    ),
    ImageSpec(
        "symlink-loop",
        "loop.jpg",
        lambda path: path.symlink_to(path.name),
        reason=r"^cannot be read \(Too many levels of symbolic links\)$",
    ),
    ImageSpec(
        "unreadable",
        "locked.png",
        unreadable(lambda: encoded(noise(8, 8), "PNG")),
        reason=r"^permission denied$",
        unreadable=True,
    ),
    ImageSpec(
        "vanishing",
        "gone.png",
        data(lambda: encoded(noise(8, 8, seed=4), "PNG")),
        reason=r"^no such file$",
        vanishes=True,
    ),
)
IMAGE_KEYS = tuple(spec.key for spec in IMAGES)
GOOD_KEYS = tuple(spec.key for spec in IMAGES if spec.reason is None)
BAD_KEYS = tuple(spec.key for spec in IMAGES if spec.reason is not None)


@dataclass(frozen=True)
class ImageCase:
    """One image of a corpus written to disk."""

    spec: ImageSpec
    path: Path

    @property
    def key(self) -> str:
        return self.spec.key

    @property
    def good(self) -> bool:
        return self.spec.reason is None

    @property
    def shown(self) -> str:
        """How a one-line message names the file: as is, or with odd characters escaped."""
        text = str(self.path)
        return text if text.isprintable() else repr(text)[1:-1]


# --- checkpoints -----------------------------------------------------------------------------


class ShellPayload:
    """Unpickling this runs a shell command that creates ``marker``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Callable[..., object], tuple[str]]:
        return (os.system, (f"touch '{self.marker}'",))


class ExecPayload:
    """Unpickling this runs Python code that creates ``marker``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Callable[..., object], tuple[str]]:
        return (exec, (f"open({str(self.marker)!r}, 'w').close()",))


@functools.cache
def zero_state(arch: str) -> dict:
    """The state dict of our ``arch`` network as tiny tensors of the right shapes and types:
    each a zero-strided view of one element, so a whole network saves in a few hundred
    kilobytes. Cached: copy it before changing it."""
    import torch

    from models.resnet import ResNet101
    from models.vgg import VGG16

    with torch.device("meta"):
        model = {"resnet101": ResNet101, "vgg16": VGG16}[arch]()
    return {
        key: torch.zeros((), dtype=tensor.dtype).expand(tensor.shape)
        for key, tensor in model.state_dict().items()
    }


def saved(content: object) -> bytes:
    import torch

    buffer = io.BytesIO()
    torch.save(content, buffer)
    return buffer.getvalue()


def _zip_of_photos() -> bytes:
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as zipped:
        zipped.writestr("readme.txt", "holiday photos, not a checkpoint")
    return archive.getvalue()


def _bad_safetensors() -> bytes:
    header = b'{"fc.bias": {"dtype": "F32", "shape": [1000], "data_offsets": [0, 4000]'  # no }}
    return struct.pack("<Q", len(header)) + header + bytes(4000)


def _ten_classes() -> dict:
    """A head of 10 classes (that loads: any number does) whose bias has 7."""
    import torch

    return {
        **zero_state("resnet101"),
        "fc.weight": torch.zeros(10, 2048),
        "fc.bias": torch.zeros(7),
    }


def _with_nan() -> dict:
    import torch

    state = zero_state("resnet101")
    key = "layer2.1.conv2.weight"
    return {**state, key: torch.full((), float("nan")).expand(state[key].shape)}


@dataclass(frozen=True)
class CheckpointSpec:
    """A checkpoint ResNet101 must refuse, with a reason matching ``reason``. ``content``:
    bytes written as they are, or an object written by ``torch.save`` (given the marker)."""

    key: str
    name: str
    content: Callable[[Path], object]
    reason: str
    malicious: bool = False


UNSAFE = r"^refused: it holds Python objects \((posix\.system|nt\.system|exec)\) that could run"
DAMAGED = r"^damaged or not a PyTorch checkpoint \("
CHECKPOINTS: tuple[CheckpointSpec, ...] = (
    CheckpointSpec(
        "malicious-shell",
        "evil.pth",
        lambda marker: {"conv1.weight": ShellPayload(marker)},
        UNSAFE,
        malicious=True,
    ),
    CheckpointSpec(
        "malicious-exec",
        "evil-nested.pt",
        lambda marker: {"state_dict": {"fc.bias": ExecPayload(marker)}},
        UNSAFE,
        malicious=True,
    ),
    CheckpointSpec("zip-not-checkpoint", "archive.pth", lambda _: _zip_of_photos(), DAMAGED),
    CheckpointSpec(
        "truncated", "cut.pth", lambda _: truncated(saved(zero_state("resnet101"))), DAMAGED
    ),
    CheckpointSpec(
        "wrong-architecture",
        "vgg16.pth",
        lambda _: zero_state("vgg16"),
        r"^does not fit resnet101: missing conv1\.weight, .*; unexpected features\.0\.weight, ",
    ),
    CheckpointSpec(
        "wrong-shapes",
        "ten-classes.pth",
        lambda _: _ten_classes(),
        r"^does not fit resnet101: shape mismatch fc\.bias \(7,\) vs \(10,\) in resnet101$",
    ),
    CheckpointSpec(
        "nan-weights",
        "nan.pth",
        lambda _: _with_nan(),
        r"^unusable weights: layer2\.1\.conv2\.weight \(holds NaN or infinite values\)$",
    ),
    CheckpointSpec(
        "safetensors-bad-header",
        "bad.safetensors",
        lambda _: _bad_safetensors(),
        r"^not a readable safetensors file \(",
    ),
    CheckpointSpec("empty", "empty.pth", lambda _: b"", r"^the file is empty$"),
)
CHECKPOINT_KEYS = tuple(spec.key for spec in CHECKPOINTS)
MALICIOUS_KEYS = tuple(spec.key for spec in CHECKPOINTS if spec.malicious)


@dataclass(frozen=True)
class CheckpointCase:
    spec: CheckpointSpec
    path: Path

    @property
    def key(self) -> str:
        return self.spec.key


# --- the corpus on disk ----------------------------------------------------------------------


@dataclass
class Corpus:
    """A corpus written into ``folder``: images in ``images/``, checkpoints in
    ``checkpoints/``."""

    folder: Path
    images: dict[str, ImageCase] = field(default_factory=dict)
    checkpoints: dict[str, CheckpointCase] = field(default_factory=dict)

    @property
    def image_folder(self) -> Path:
        return self.folder / "images"

    @property
    def marker(self) -> Path:
        return self.folder / MARKER

    @property
    def good(self) -> list[ImageCase]:
        return [case for case in self.images.values() if case.good]

    @property
    def bad(self) -> list[ImageCase]:
        return [case for case in self.images.values() if not case.good]

    def restore(self) -> None:
        """Make the vanishing files again, after a test made them vanish."""
        for case in self.images.values():
            if case.spec.vanishes and not case.path.exists():
                case.spec.make(case.path)

    def shell_ran(self) -> list[Path]:
        """Files the shell-like names or the payloads would have made, if anything ran them."""
        places = [self.folder, self.image_folder, Path.cwd()]
        made = [place / PWNED for place in places if (place / PWNED).exists()]
        return made + ([self.marker] if self.marker.exists() else [])


def write_images(folder: Path) -> dict[str, ImageCase]:
    """Write the image corpus into ``folder`` (the unreadable file only where it can be)."""
    folder.mkdir(parents=True, exist_ok=True)
    cases = {}
    for spec in IMAGES:
        if spec.unreadable and running_as_root():
            continue
        path = folder / os.fsdecode(spec.name)
        spec.make(path)
        cases[spec.key] = ImageCase(spec, path)
    return cases


def write_checkpoints(folder: Path, marker: Path) -> dict[str, CheckpointCase]:
    """Write the checkpoint corpus into ``folder``; the payloads would create ``marker``."""
    import torch

    folder.mkdir(parents=True, exist_ok=True)
    cases = {}
    for spec in CHECKPOINTS:
        path = folder / spec.name
        content = spec.content(marker)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            torch.save(content, path)
        cases[spec.key] = CheckpointCase(spec, path)
    return cases


def build(folder: Path, *, checkpoints: bool = True) -> Corpus:
    """Write the whole corpus into ``folder`` (created)."""
    corpus = Corpus(folder)
    corpus.images = write_images(corpus.image_folder)
    if checkpoints:
        corpus.checkpoints = write_checkpoints(folder / "checkpoints", corpus.marker)
    return corpus
