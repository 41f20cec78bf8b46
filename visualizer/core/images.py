"""Reading user images: validated, oriented, 8-bit RGB, or a one-line ``ImageLoadError``.

The declared size is checked before any pixel is decoded, so a decompression bomb costs nothing.
Only raster formats that Pillow decodes by itself are opened: never EPS (which runs
Ghostscript), never vector formats.
"""

from __future__ import annotations

import functools
import os
import warnings
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from models.weights import PATH_SHOWN, shown

# 134 megapixels: room for a 108-megapixel camera, and 1.5 times Pillow's own warning threshold
# of 89 megapixels. A 224-pixel network input needs nowhere near as much.
MAX_PIXELS = 128 * 1024 * 1024
# Raster formats decoded by Pillow alone (JPEG covers MPO); anything else is refused with its
# format's name. Those a Pillow release lacks (AVIF before 11.2) are left out at first use.
FORMATS = (
    "AVIF",
    "BMP",
    "DIB",
    "GIF",
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


class ImageLoadError(ValueError):
    """An image could not be read; the message is ``"<file>: <reason>"`` on one line."""


def load_image(path: str | os.PathLike[str]) -> Image.Image:
    """Read ``path`` as an 8-bit RGB image with its EXIF orientation applied.

    Any mode is converted faithfully (16-bit and float images are scaled, not clipped;
    transparency is flattened onto ``BACKGROUND``); animations give their first frame.

    Raises:
        ImageLoadError: not a readable raster image, too large, truncated, not a file, or
            written to while it was being read (the pixels could mix two versions of it).
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
    with file:
        return _read(file, path, name)


def _read(file: BinaryIO, path: Path, name: str) -> Image.Image:
    """The RGB image in the open ``file``, refused when it is written to while being read."""
    before = _version(file)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(file, formats=_formats())
    except Image.DecompressionBombError:
        raise ImageLoadError(f"{name}: {_too_large_reason(None)}") from None
    except UnidentifiedImageError:
        raise ImageLoadError(f"{name}: {_unidentified_reason(path)}") from None
    except OSError as error:
        raise ImageLoadError(f"{name}: cannot be read ({_os_reason(error)})") from None
    with image:
        width, height = image.size
        if width < 1 or height < 1:
            raise ImageLoadError(f"{name}: the image is empty ({width}×{height} pixels)")
        if width * height > MAX_PIXELS:
            raise ImageLoadError(f"{name}: {_too_large_reason((width, height))}")
        try:
            image.load()
            # After load(): reading EXIF from a PNG before it would decode the image unchecked.
            oriented = ImageOps.exif_transpose(image)
        except Exception as error:  # noqa: BLE001 - decoders raise all kinds on bad data
            reason = f"truncated or corrupt {image.format} data ({_reason(error)})"
            if _version(file) != before:
                reason = CHANGED
            raise ImageLoadError(f"{name}: {reason}") from None
        # Written to in place meanwhile, the pixels may mix the old file and the new one.
        if _version(file) != before:
            raise ImageLoadError(f"{name}: {CHANGED}")
        try:
            return to_rgb(oriented)
        except ValueError as error:
            raise ImageLoadError(f"{name}: {error}") from None
        except Exception as error:  # noqa: BLE001
            raise ImageLoadError(f"{name}: cannot be converted to RGB ({_reason(error)})") from None


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


@functools.cache
def _formats() -> tuple[str, ...]:
    Image.init()
    return tuple(name for name in FORMATS if name in Image.OPEN)


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


def _unidentified_reason(path: Path) -> str:
    try:
        with path.open("rb") as file:
            head = file.read(512)
    except OSError as error:
        return f"cannot be read ({_reason(error)})"
    if not head:
        return "the file is empty"
    lowered = head.lstrip().lower()
    if lowered.startswith(SVG_MARKERS) or b"<svg" in lowered:
        return "SVG is a vector format; save it as PNG or JPEG first"
    if lowered.startswith(POSTSCRIPT_MARKERS):
        return "PostScript and PDF are not supported; save the picture as PNG or JPEG first"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as other:
                return f"{other.format} images are not supported; use PNG, JPEG, WebP or TIFF"
    except Exception:  # noqa: BLE001 - any failure here just means "not an image"
        return "not an image (unrecognised or corrupt data)"


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
