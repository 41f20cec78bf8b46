"""Reading user images: validated, oriented, 8-bit RGB, or a one-line ``ImageLoadError``.

The declared size is checked before any pixel is decoded, so a decompression bomb costs nothing.
Only raster formats are opened: those Pillow decodes by itself, and HEIC/HEIF through the
pillow-heif plugin, registered the first time such a file is read; never EPS (which runs
Ghostscript), never vector formats. Whatever the image library raises or warns becomes an
``ImageLoadError`` or a one-line note; nothing of it reaches the caller raw.
"""

from __future__ import annotations

import bisect
import functools
import io
import os
import struct
import warnings
from pathlib import Path
from typing import BinaryIO, NamedTuple

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from models.weights import PATH_SHOWN, shown

# 134 megapixels: room for a 108-megapixel camera, and 1.5 times Pillow's own warning threshold
# of 89 megapixels. A 224-pixel network input needs nowhere near as much.
MAX_PIXELS = 128 * 1024 * 1024
# Raster formats decoded by Pillow (JPEG covers MPO) or by pillow-heif (HEIF, which covers
# HEIC); anything else is refused with its format's name. Those this installation lacks (AVIF
# before Pillow 11.2, HEIF without pillow-heif) are left out when a file is opened.
FORMATS = (
    "AVIF",
    "BMP",
    "DIB",
    "GIF",
    "HEIF",
    "ICO",
    "JPEG",
    "JPEG2000",
    "PCX",
    "PNG",
    "PPM",
    "QOI",
    "SGI",
    "TGA",
    "TIFF",
    "WEBP",
)
# Transparent pixels are shown over the ImageNet mean colour, which the networks' input
# normalisation turns into zero: the most neutral thing a network can be shown.
BACKGROUND = (124, 116, 104)
COLOUR_KEY_MODES = ("1", "L", "I", "I;16", "RGB")
REASON_SHOWN = 200  # characters of a library's error message shown
CHANGED = "the file changed while it was being read; try again"
# How SVG, PostScript (text and DOS binary EPS) and PDF files begin, in lower case.
SVG_MARKERS = (b"<svg", b"<?xml")
POSTSCRIPT_MARKERS = (b"%!ps", b"%pdf", b"\xc5\xd0\xd3\xc6")
HEAD = 64  # bytes read to tell a file's format
# ISO base media file brands (the ftyp box): HEVC-coded HEIF is HEIC; AV1-coded is AVIF.
HEIC_BRANDS = (b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"hevm", b"hevs")
AVIF_BRANDS = (b"avif", b"avis")
HEIF_BRANDS = (b"mif1", b"msf1", b"mif2", b"miaf")
# PNG chunks holding metadata that Pillow inflates and caps (1 MiB each, 64 MiB of text in
# all). One over its cap is left out of the file Pillow sees: the pixels do not depend on it.
PNG_METADATA = {b"iCCP": "ICC profile", b"tEXt": "text", b"zTXt": "text", b"iTXt": "text"}
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
MIB = 2**20
TIFF_WARNINGS = "TiffImagePlugin"  # Pillow's EXIF and TIFF tag reader, which warns on bad tags


class ImageLoadError(ValueError):
    """An image could not be read; the message is ``"<file>: <reason>"`` on one line."""


class LoadedImage(NamedTuple):
    """An image read by ``load_image_with_notes``.

    ``image`` is what ``load_image`` returns. ``notes`` are one-line, printable remarks
    ``"<file>: <what>"`` about things in the file that were skipped or are malformed but left
    the pixels intact (an oversized ICC profile, malformed EXIF tags); empty for most files.
    """

    image: Image.Image
    notes: tuple[str, ...]


class _Kind(NamedTuple):
    """A format told from a file's first bytes: its name for people, and Pillow's plugin."""

    name: str
    plugin: str


def load_image(path: str | os.PathLike[str]) -> Image.Image:
    """Read ``path`` as an 8-bit RGB image with its EXIF orientation applied.

    Any mode is converted faithfully (16-bit and float images are scaled, not clipped;
    transparency is flattened onto ``BACKGROUND``); animations give their first frame. HEIC,
    HEIF and AVIF photos are read too. Metadata that is malformed or too large to read (an ICC
    profile inflating past Pillow's 1 MiB cap, broken EXIF tags) is skipped, and the library's
    warnings about it are kept from the caller; ``load_image_with_notes`` gives them as notes.

    Returns:
        An RGB ``PIL.Image`` (W×H as displayed, after the EXIF orientation), decoded in memory.

    Raises:
        ImageLoadError: not a readable raster image, too large, truncated, not a file, or
            written to while it was being read (the pixels could mix two versions of it).
            The message is ``"<file>: <reason>"`` on one line; a file of a known format that
            cannot be decoded is named by its format, e.g. ``"HEIC image that cannot be
            decoded (...)"``.
    """
    return load_image_with_notes(path).image


def load_image_with_notes(path: str | os.PathLike[str]) -> LoadedImage:
    """``load_image``, with notes on what was skipped or malformed in the file (see LoadedImage).

    The image library's warnings are recorded while the file is read (not shown, and not
    turned into errors by a caller's warning filters); those that matter become notes.
    ``warnings.catch_warnings`` is process-wide before Python 3.14: a warning another thread
    gives meanwhile may be recorded here instead of shown.

    Raises:
        ImageLoadError: as ``load_image``.
    """
    path = Path(path)
    name = shown(path, PATH_SHOWN)
    if path.is_dir():
        raise ImageLoadError(f"{name}: is a folder, not an image")
    if path.exists() and not path.is_file():  # a pipe or a device would block or never end
        raise ImageLoadError(f"{name}: not a regular file")
    try:
        file = open(path, "rb")  # noqa: SIM115 - closed by the with below
    except FileNotFoundError:
        raise ImageLoadError(f"{name}: no such file") from None
    except PermissionError:
        raise ImageLoadError(f"{name}: permission denied") from None
    except OSError as error:  # a loop of links, a name too long, …
        raise ImageLoadError(f"{name}: cannot be read ({_os_reason(error)})") from None
    caught: list[warnings.WarningMessage] | None = []
    try:
        with file, warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            image, notes = _read(file, name)
    finally:
        _warn_again([w for w in caught or [] if not _from_image_library(w)])
    ours = [w for w in caught or [] if _from_image_library(w)]
    return LoadedImage(image, tuple(dict.fromkeys([*notes, *_warning_notes(ours, name)])))


def _read(file: BinaryIO, name: str) -> tuple[Image.Image, list[str]]:
    """The RGB image in the open ``file`` and notes on it; a PNG whose metadata Pillow refuses
    is read again without that metadata."""
    try:
        before = _version(file)
        kind = _sniff(file.read(HEAD))
    except OSError as error:
        raise ImageLoadError(f"{name}: cannot be read ({_os_reason(error)})") from None
    try:
        return _decode(file, file, name, kind, before)
    except ImageLoadError:
        if kind is None or kind.plugin != "PNG":
            raise
        left_out = _png_metadata_refused(file)
        if not left_out:
            raise
    # Metadata that Pillow refuses no longer hides intact pixels: read the file without it.
    # The size is checked again first; nothing is inflated that Pillow capped.
    spans = _spans_without(file, [(start, end) for start, end, _ in left_out])
    with io.BufferedReader(_Spliced(file, spans)) as view:
        image, notes = _decode(view, file, name, kind, before)
    said = dict.fromkeys(note for _, _, note in left_out)
    return image, [f"{name}: {note}" for note in said] + notes


def _decode(
    stream: BinaryIO, file: BinaryIO, name: str, kind: _Kind | None, before: tuple[int, int]
) -> tuple[Image.Image, list[str]]:
    """Open, check, decode, orient and convert the image in ``stream`` (``file`` or a view of
    it); ``file`` is watched for writes since ``before``."""
    notes: list[str] = []
    with _open(stream, name, kind) as image:
        label = kind.name if kind else image.format or "image"
        width, height = image.size
        if width < 1 or height < 1:
            raise ImageLoadError(f"{name}: the image is empty ({width}×{height} pixels)")
        if width * height > MAX_PIXELS:
            raise ImageLoadError(f"{name}: {_too_large_reason((width, height))}")
        try:
            image.load()
        except Image.DecompressionBombError:  # a frame or tile larger than the header said
            raise ImageLoadError(f"{name}: {_too_large_reason(None)}") from None
        except Exception as error:  # noqa: BLE001 - decoders raise all kinds on bad data
            reason = f"truncated or corrupt {label} data ({_reason(error)})"
            if _version(file) != before:
                reason = CHANGED
            raise ImageLoadError(f"{name}: {reason}") from None
        # Written to in place meanwhile, the pixels may mix the old file and the new one.
        if _version(file) != before:
            raise ImageLoadError(f"{name}: {CHANGED}")
        try:
            # After load(): reading EXIF from a PNG before it would decode the image unchecked.
            oriented = ImageOps.exif_transpose(image)
        except Exception as error:  # noqa: BLE001 - EXIF is metadata: the pixels are intact
            oriented = image
            notes.append(
                f"{name}: EXIF metadata unreadable, orientation not applied ({_reason(error)})"
            )
        try:
            return to_rgb(oriented), notes
        except ValueError as error:
            raise ImageLoadError(f"{name}: {_reason(error)}") from None
        except Exception as error:  # noqa: BLE001
            raise ImageLoadError(f"{name}: cannot be converted to RGB ({_reason(error)})") from None


def _open(stream: BinaryIO, name: str, kind: _Kind | None) -> Image.Image:
    """Pillow's image of ``stream``, headers read, no pixel decoded; any failure an
    ``ImageLoadError``."""
    try:
        return Image.open(stream, formats=_formats(kind))
    except Image.DecompressionBombError:
        raise ImageLoadError(f"{name}: {_too_large_reason(None)}") from None
    except UnidentifiedImageError:
        raise ImageLoadError(f"{name}: {_unidentified_reason(stream, kind)}") from None
    except OSError as error:
        if error.errno is not None:  # the system's error: the file could not be read
            raise ImageLoadError(f"{name}: cannot be read ({_os_reason(error)})") from None
        raise ImageLoadError(f"{name}: {_undecodable(kind, error)}") from None
    except Exception as error:  # noqa: BLE001 - plugins raise all kinds on bad headers
        raise ImageLoadError(f"{name}: {_undecodable(kind, error)}") from None


def to_rgb(image: Image.Image) -> Image.Image:
    """An 8-bit RGB copy of ``image``: high bit depths scaled, transparency flattened.

    Raises:
        ValueError: a colour mode Pillow cannot turn into RGB.
    """
    if "transparency" in image.info and image.mode in COLOUR_KEY_MODES:
        return _flatten_colour_key(image)
    if image.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):
        image = _to_8_bit(image)
    if image.mode == "P":
        # Palette images may hide transparency in their palette or in info["transparency"].
        image = image.convert("RGBA" if _has_transparency(image) else "RGB")
    if image.mode in ("LA", "La", "PA", "RGBa"):
        image = image.convert("RGBA")
    if image.mode == "RGBA":
        flat = Image.new("RGB", image.size, BACKGROUND)
        flat.paste(image, mask=image.getchannel("A"))
        return flat
    if image.mode == "RGB":
        return image.copy()
    try:
        return image.convert("RGB")
    except ValueError:
        raise ValueError(f"{image.mode} images are not supported") from None


def _flatten_colour_key(image: Image.Image) -> Image.Image:
    """Flatten an image whose one colour (PNG's tRNS) means "transparent" onto BACKGROUND."""
    values = np.asarray(image)
    key = np.asarray(image.info["transparency"], dtype=np.int64)
    if values.dtype == bool:  # mode "1"
        key = key != 0
    elif values.dtype == np.uint8 and key.max(initial=0) > 255:
        key = key >> 8  # a 16-bit PNG's key, for pixels Pillow has cut to 8 bits
    opaque = values != key
    if opaque.ndim == 3:
        opaque = opaque.any(axis=-1)
    plain = image.copy()
    del plain.info["transparency"]
    flat = Image.new("RGB", image.size, BACKGROUND)
    flat.paste(to_rgb(plain), mask=Image.fromarray(opaque.astype(np.uint8) * 255, "L"))
    return flat


def _formats(kind: _Kind | None = None) -> tuple[str, ...]:
    """The plugins to try, those of FORMATS this installation has; the sniffed one first.

    pillow-heif's is registered only for a file that looks like HEIF.
    """
    Image.init()
    if kind is not None and kind.plugin not in Image.OPEN:
        _heif_opener()
    listed = tuple(name for name in FORMATS if name in Image.OPEN)
    if kind is None or kind.plugin not in listed:
        return listed
    return (kind.plugin, *(name for name in listed if name != kind.plugin))


@functools.cache
def _heif_opener() -> str | None:
    """Register pillow-heif's HEIF opener with Pillow, once; None when done, else why not.

    Its import costs about 0.1 s, so it is paid by the first HEIF file, not by every start.
    """
    try:
        import pillow_heif  # noqa: PLC0415 - only for HEIF files
    except ModuleNotFoundError:
        return "pillow-heif is not installed"
    except Exception as error:  # noqa: BLE001 - e.g. its libheif missing or broken
        return f"pillow-heif cannot be loaded ({_reason(error)})"
    pillow_heif.register_heif_opener()
    # pillow-heif before 1.0 read AVIF too; Pillow reads it itself from 11.2.
    register_avif = getattr(pillow_heif, "register_avif_opener", None)
    if register_avif is not None and "AVIF" not in Image.OPEN:
        register_avif()
    return None


def _sniff(head: bytes) -> _Kind | None:
    """The format of a file that begins with ``head``, for the formats whose readers may be
    missing or that are worth naming when they fail; None for anything else."""
    if head.startswith(PNG_SIGNATURE):
        return _Kind("PNG", "PNG")
    if head.startswith(b"\xff\xd8\xff"):
        return _Kind("JPEG", "JPEG")
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return _Kind("GIF", "GIF")
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return _Kind("WebP", "WEBP")
    if head[:4] in (b"II*\0", b"MM\0*"):
        return _Kind("TIFF", "TIFF")
    if head[4:8] == b"ftyp":
        return _iso_media_kind(head)
    return None


def _iso_media_kind(head: bytes) -> _Kind | None:
    """HEIC, HEIF or AVIF from an ISO base media file's ftyp box (major, then compatible brands)."""
    (size,) = struct.unpack(">I", head[:4])
    brands = [head[8:12]] + [head[at : at + 4] for at in range(16, min(size, len(head)), 4)]
    if any(brand in AVIF_BRANDS for brand in brands):
        return _Kind("AVIF", "AVIF")
    if any(brand in HEIC_BRANDS for brand in brands):
        return _Kind("HEIC", "HEIF")
    if any(brand in HEIF_BRANDS for brand in brands):
        return _Kind("HEIF", "HEIF")
    return None


def _undecodable(kind: _Kind | None, error: BaseException) -> str:
    if kind is None:
        return f"not a readable image ({_reason(error)})"
    return f"{kind.name} image that cannot be decoded ({_reason(error)})"


def _plugin_reason(stream: BinaryIO, kind: _Kind) -> str:
    """Why the plugin for ``kind`` does not open ``stream`` (Image.open only says that none did)."""
    if kind.plugin not in Image.OPEN:
        missing = _heif_opener() if kind.plugin == "HEIF" else None
        return missing or f"this installation has no {kind.name} decoder"
    factory, _accept = Image.OPEN[kind.plugin]
    try:
        stream.seek(0)
        with factory(stream, ""):
            pass
    except Exception as error:  # noqa: BLE001 - the plugin's reason is what is wanted
        return _reason(error)
    return "unrecognised data"


def _png_metadata_refused(file: BinaryIO) -> list[tuple[int, int, str]]:
    """The metadata chunks of the PNG in ``file`` that Pillow's own reader refuses.

    Each is ``(start, end, note)``: its bytes in the file, and e.g. ``"ICC profile ignored
    (over 1 MiB uncompressed)"``.
    Found by handing each metadata chunk, in order, to Pillow's chunk reader (which caps what
    it inflates); an empty list when there are none, or when the file is no PNG after all.
    """
    from PIL import PngImagePlugin  # noqa: PLC0415 - Image.open has imported it by now

    refused: list[tuple[int, int, str]] = []
    try:
        file.seek(len(PNG_SIGNATURE))
        reader = PngImagePlugin.PngStream(file)
        while len(header := file.read(8)) == 8:
            length, chunk = struct.unpack(">I4s", header)
            start = file.tell() - 8
            if chunk in PNG_METADATA:
                try:
                    reader.call(chunk, start + 8, length)
                except Exception as error:  # noqa: BLE001 - too large or malformed: left out
                    what = f"{PNG_METADATA[chunk]} ignored ({_metadata_reason(error)})"
                    refused.append((start, start + 12 + length, what))
            if chunk == b"IEND":
                break
            file.seek(start + 12 + length)
    except Exception:  # noqa: BLE001 - a reader that changed, a file that ends: nothing found
        return []
    return refused


def _metadata_reason(error: BaseException) -> str:
    """Why Pillow refused a PNG metadata chunk, in words rather than its constants' names."""
    from PIL import PngImagePlugin  # noqa: PLC0415

    text = str(error)
    if "MAX_TEXT_CHUNK" in text:
        return f"over {PngImagePlugin.MAX_TEXT_CHUNK / MIB:g} MiB uncompressed"
    if "MAX_TEXT_MEMORY" in text:
        return f"over {PngImagePlugin.MAX_TEXT_MEMORY / MIB:g} MiB of text in all"
    return _reason(error)


def _spans_without(file: BinaryIO, holes: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """The byte ranges of ``file`` around ``holes`` (sorted, not overlapping), in order."""
    end = os.fstat(file.fileno()).st_size
    spans, position = [], 0
    for start, stop in holes:
        if start > position:
            spans.append((position, start))
        position = max(position, stop)
    if position < end:
        spans.append((position, end))
    return spans


class _Spliced(io.RawIOBase):
    """A read-only, seekable view of ``file`` holding only the byte ranges ``spans``, in order.

    Lets Pillow read a file with some of its chunks left out, without copying the file.
    """

    def __init__(self, file: BinaryIO, spans: list[tuple[int, int]]) -> None:
        super().__init__()
        self._file = file
        self._spans = spans
        self._offsets: list[int] = []  # where each span begins in the view
        size = 0
        for start, end in spans:
            self._offsets.append(size)
            size += end - start
        self._size = size
        self._position = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._position, io.SEEK_END: self._size}[whence]
        if base + offset < 0:
            raise ValueError(f"negative seek position {base + offset}")
        self._position = base + offset
        return self._position

    def readinto(self, buffer: memoryview | bytearray) -> int:  # type: ignore[override]
        target = memoryview(buffer).cast("B")
        filled = 0
        while filled < len(target) and self._position < self._size:
            index = bisect.bisect_right(self._offsets, self._position) - 1
            start, end = self._spans[index]
            at = start + self._position - self._offsets[index]
            count = min(len(target) - filled, end - at)
            self._file.seek(at)
            got = self._file.readinto(target[filled : filled + count])  # type: ignore[attr-defined]
            if not got:
                break
            filled += got
            self._position += got
        return filled


def _to_8_bit(image: Image.Image) -> Image.Image:
    """Scale a 16-bit, 32-bit or float greyscale image to 8 bits.

    Integer images are scaled by their type's range (16-bit: ÷257). Float images in [0, 1]
    are scaled by 255; any other range, and 32-bit integers beyond 16 bits, are stretched from
    their minimum to their maximum, since no fixed range fits them.
    """
    pixels = np.asarray(image, dtype=np.float64)
    finite = pixels[np.isfinite(pixels)]
    low, high = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 0.0)
    if image.mode == "F" and low >= 0.0 and high <= 1.0:
        low, high = 0.0, 1.0
    elif image.mode != "F" and low >= 0 and high <= 65535:
        low, high = 0.0, 65535.0
    span = high - low
    scaled = (pixels - low) * (255.0 / span) if span > 0 else np.zeros_like(pixels)
    scaled = np.nan_to_num(scaled, nan=0.0, posinf=255.0, neginf=0.0)
    return Image.fromarray(np.clip(np.rint(scaled), 0, 255).astype(np.uint8), "L")


def _has_transparency(image: Image.Image) -> bool:
    return "transparency" in image.info or (
        image.palette is not None and image.palette.mode == "RGBA"
    )


def _too_large_reason(size: tuple[int, int] | None) -> str:
    limit = f"the limit is {MAX_PIXELS // 1_000_000} megapixels"
    if size is None:
        return f"declares far more pixels than an image should ({limit})"
    width, height = size
    return f"{width}×{height} pixels is {width * height / 1e6:.0f} megapixels; {limit}"


def _unidentified_reason(stream: BinaryIO, kind: _Kind | None) -> str:
    """Why no listed plugin opened ``stream``: empty, a vector format, a known format that
    cannot be decoded (its plugin's reason), another format, or no image at all."""
    try:
        stream.seek(0)
        head = stream.read(512)
    except OSError as error:
        return f"cannot be read ({_os_reason(error)})"
    if not head:
        return "the file is empty"
    lowered = head.lstrip().lower()
    if lowered.startswith(SVG_MARKERS) or b"<svg" in lowered:
        return "SVG is a vector format; save it as PNG or JPEG first"
    if lowered.startswith(POSTSCRIPT_MARKERS):
        return "PostScript and PDF are not supported; save the picture as PNG or JPEG first"
    if kind is not None:
        return f"{kind.name} image that cannot be decoded ({_plugin_reason(stream, kind)})"
    try:
        stream.seek(0)
        with Image.open(stream) as other:
            return f"{other.format} images are not supported; use PNG, JPEG, WebP or TIFF"
    except Exception:  # noqa: BLE001 - any failure here just means "not an image"
        return "not an image (unrecognised or corrupt data)"


def _from_image_library(warning: warnings.WarningMessage) -> bool:
    """Whether Pillow or pillow-heif gave ``warning`` (directly, or through this module) about
    a file; their deprecation warnings are for developers, and are given back as they came."""
    if issubclass(warning.category, (DeprecationWarning, PendingDeprecationWarning)):
        return False
    parts = Path(warning.filename).parts
    return "PIL" in parts or "pillow_heif" in parts or warning.filename == __file__


def _warn_again(caught: list[warnings.WarningMessage]) -> None:
    """Give back warnings that other code gave while an image was read, as they came."""
    for warning in caught:
        warnings.warn_explicit(
            warning.message, warning.category, warning.filename, warning.lineno, source=None
        )


def _warning_notes(caught: list[warnings.WarningMessage], name: str) -> list[str]:
    """One-line notes for the image library's warnings: malformed metadata tags as one note,
    anything else as its own; Pillow's decompression-bomb warning is dropped (MAX_PIXELS,
    below Pillow's error threshold, already decided)."""
    tags: list[str] = []
    others: list[str] = []
    for warning in caught:
        if issubclass(warning.category, Image.DecompressionBombWarning):
            continue
        text = _reason(warning.message).removeprefix("Metadata Warning, ")
        (tags if TIFF_WARNINGS in warning.filename else others).append(text)
    notes = [f"{name}: {text}" for text in dict.fromkeys(others)]
    distinct = list(dict.fromkeys(tags))
    if distinct:
        more = f", and {len(distinct) - 1} more" if len(distinct) > 1 else ""
        notes.insert(0, f"{name}: malformed metadata ({distinct[0]}{more})")
    return notes


def _version(file: BinaryIO) -> tuple[int, int]:
    """What changes whenever an open file is written to: its size and modification time.

    Not its change time: that changes too when the file is only renamed over, which leaves
    what was opened whole.
    """
    status = os.fstat(file.fileno())
    return status.st_size, status.st_mtime_ns


def _os_reason(error: OSError) -> str:
    """The reason of an operating-system error without the file name it repeats."""
    return shown(error.strerror, REASON_SHOWN) if error.strerror else _reason(error)


def _reason(error: BaseException) -> str:
    return shown(" ".join(str(error).split()) or type(error).__name__, REASON_SHOWN)
