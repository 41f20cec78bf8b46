"""load_image on what users' files hold: oversized metadata, HEIC and AVIF photos, malformed
EXIF, and any failure of the image library, which must reach the caller as one line."""

from __future__ import annotations

import io
import random
import struct
import subprocess
import sys
import tracemalloc
import warnings
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFile, ImageOps, PngImagePlugin, features

from visualizer.core import images
from visualizer.core.images import MAX_PIXELS, ImageLoadError, load_image, load_image_with_notes

FIELD_REPORTS = Path(__file__).parents[2].parent / "shared" / "inputs" / "field-reports"
LIMIT = f"the limit is {MAX_PIXELS // 1_000_000} megapixels"
MIB = 2**20


# --- helpers ---------------------------------------------------------------------------------


def picture(width: int = 64, height: int = 48) -> Image.Image:
    """Smooth ramps: survives lossy codecs with small, predictable errors."""
    y, x = np.mgrid[0:height, 0:width]
    ramps = np.stack([x * 255 // width, y * 255 // height, (x + y) * 127 // (width + height)], -1)
    return Image.fromarray(ramps.astype(np.uint8), "RGB")


def largest_difference(image: Image.Image, reference: Image.Image) -> int:
    assert image.size == reference.size
    return int(np.abs(np.asarray(image, int) - np.asarray(reference, int)).max())


def refusal(path: Path) -> str:
    """The reason load_image gives for refusing ``path``, once the message's form is checked."""
    with pytest.raises(ImageLoadError) as caught:
        load_image(path)
    message = str(caught.value)
    assert message.isprintable(), f"not one clean line: {message!r}"
    assert message.startswith(f"{path}: "), message
    return message[len(f"{path}: ") :]


@pytest.fixture
def no_warning_escapes() -> Iterator[None]:
    """Any warning that reaches the caller fails the test."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        yield


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    chunks, position = [], 8
    while position < len(data):
        (length,) = struct.unpack(">I", data[position : position + 4])
        kind = data[position + 4 : position + 8]
        chunks.append((kind, data[position + 8 : position + 8 + length]))
        position += 12 + length
    return chunks


def png_with(
    image: Image.Image,
    before: list[tuple[bytes, bytes]] = (),  # type: ignore[assignment]
    after: list[tuple[bytes, bytes]] = (),  # type: ignore[assignment]
    **options: object,
) -> bytes:
    """``image`` as PNG with extra chunks before its first IDAT and after its last."""
    buffer = io.BytesIO()
    image.save(buffer, "PNG", **options)
    chunks = png_chunks(buffer.getvalue())
    first = next(i for i, (kind, _) in enumerate(chunks) if kind == b"IDAT")
    chunks[first:first] = list(before)
    chunks[-1:-1] = list(after)  # before IEND
    return b"\x89PNG\r\n\x1a\n" + b"".join(png_chunk(kind, data) for kind, data in chunks)


def inflating(size: int) -> bytes:
    """Deflated zeros that inflate to ``size`` bytes (a few KiB for megabytes)."""
    return zlib.compress(b"\0" * size, 9)


def huge_icc(size: int = 2 * MIB) -> tuple[bytes, bytes]:
    return b"iCCP", b"ICC Profile\0\0" + inflating(size)


def huge_ztxt(size: int = 2 * MIB, key: bytes = b"Comment") -> tuple[bytes, bytes]:
    return b"zTXt", key + b"\0\0" + inflating(size)


def huge_itxt(size: int = 2 * MIB) -> tuple[bytes, bytes]:
    return b"iTXt", b"XML:com.adobe.xmp\0\x01\x00en\0\0" + inflating(size)


def exif_orientation(orientation: int) -> tuple[bytes, bytes]:
    exif = Image.Exif()
    exif[0x0112] = orientation
    return b"eXIf", exif.tobytes()[6:]  # PNG's eXIf holds the TIFF data without "Exif\0\0"


# --- PNG metadata beyond Pillow's limits -----------------------------------------------------

OVERSIZED = {
    "icc-profile": ([huge_icc()], [], "ICC profile"),
    "compressed-text": ([huge_ztxt()], [], "text"),
    "international-text": ([huge_itxt()], [], "text"),
    "text-after-the-pixels": ([], [huge_ztxt()], "text"),
    "icc-and-text": ([huge_icc(), huge_ztxt()], [huge_itxt()], "ICC profile"),
}


@pytest.mark.parametrize("case", sorted(OVERSIZED))
def test_oversized_png_metadata_is_ignored_and_the_pixels_load(
    case: str, tmp_path: Path, no_warning_escapes: None
) -> None:
    before, after, what = OVERSIZED[case]
    path = tmp_path / f"{case}.png"
    path.write_bytes(png_with(picture(), before, after))
    assert path.stat().st_size < 100_000
    loaded, notes = load_image_with_notes(path)
    assert loaded.mode == "RGB"
    assert largest_difference(loaded, picture()) == 0
    assert len(notes) >= 1
    assert all(note.startswith(f"{path}: ") and note.isprintable() for note in notes)
    assert any(what in note and "ignored" in note for note in notes), notes
    assert load_image(path).tobytes() == loaded.tobytes()


def test_a_small_icc_profile_is_kept_when_text_is_dropped(tmp_path: Path) -> None:
    """Only what is over the limit is dropped; the rest of the metadata stays."""
    path = tmp_path / "profile-and-huge-text.png"
    profile = b"a small profile, as far as Pillow cares"
    path.write_bytes(png_with(picture(), [huge_ztxt()], icc_profile=profile))
    loaded, notes = load_image_with_notes(path)
    assert loaded.info.get("icc_profile") == profile
    assert [note for note in notes if "ICC" in note] == []


def test_text_over_the_total_limit_is_ignored(tmp_path: Path, no_warning_escapes: None) -> None:
    """Each chunk is under 1 MiB, together they pass Pillow's 64 MiB for all text."""
    chunk = huge_ztxt(PngImagePlugin.MAX_TEXT_CHUNK - 1024)
    count = PngImagePlugin.MAX_TEXT_MEMORY // (PngImagePlugin.MAX_TEXT_CHUNK - 1024) + 2
    path = tmp_path / "much-text.png"
    path.write_bytes(png_with(picture(), [chunk] * count))
    loaded, notes = load_image_with_notes(path)
    assert largest_difference(loaded, picture()) == 0
    assert any("text" in note for note in notes), notes


def test_orientation_survives_dropped_metadata(tmp_path: Path) -> None:
    path = tmp_path / "turned.png"
    path.write_bytes(png_with(picture(), [exif_orientation(6), huge_icc()]))
    loaded = load_image(path)
    assert largest_difference(loaded, picture().transpose(Image.Transpose.ROTATE_270)) == 0


def test_a_bomb_with_oversized_metadata_is_still_refused_undecoded(tmp_path: Path) -> None:
    """Dropping the metadata does not skip the size check, and decodes nothing."""
    header = struct.pack(">IIBBBBB", 30000, 30000, 8, 2, 0, 0, 0)
    path = tmp_path / "bomb.png"
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", header)
        + png_chunk(*huge_icc())
        + png_chunk(b"IDAT", zlib.compress(b"\0" * 64))
        + png_chunk(b"IEND", b"")
    )
    tracemalloc.start()
    try:
        reason = refusal(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert reason == f"declares far more pixels than an image should ({LIMIT})"
    assert peak < 20_000_000


def test_a_truncated_png_with_oversized_metadata_is_refused_as_truncated(tmp_path: Path) -> None:
    data = png_with(picture(), [huge_icc()])
    path = tmp_path / "cut.png"
    path.write_bytes(data[: len(data) - 40])
    assert refusal(path).startswith("truncated or corrupt PNG data (")


def test_field_report_huge_icc_profile_loads(no_warning_escapes: None) -> None:
    path = FIELD_REPORTS / "huge_icc_profile.png"
    if not path.is_file():
        pytest.skip(f"{path} is not here")
    loaded, notes = load_image_with_notes(path)
    assert (loaded.mode, loaded.size) == ("RGB", (64, 48))
    assert notes == (f"{path}: ICC profile ignored (over 1 MiB uncompressed)",)


# --- every failure of the image library is an ImageLoadError ---------------------------------

# Exceptions Pillow's plugins and decoders are known to raise on bad data, and some they might.
LIBRARY_FAILURES: list[Callable[[], BaseException]] = [
    lambda: ValueError("Decompressed data too large for PngImagePlugin.MAX_TEXT_CHUNK"),
    lambda: SyntaxError("broken PNG file"),
    lambda: struct.error("unpack requires a buffer of 4 bytes"),
    lambda: KeyError(42),
    lambda: IndexError("list index out of range"),
    lambda: TypeError("'NoneType' object is not subscriptable"),
    lambda: ZeroDivisionError("division by zero"),
    EOFError,
    lambda: RuntimeError("decoder error -2"),
    lambda: OSError("broken data stream when reading image file"),
    MemoryError,
    lambda: Image.DecompressionBombError("Image size (1 pixels) exceeds limit"),
    lambda: NotImplementedError("unsupported compression"),
]
STEPS = {
    "open": (ImageFile.ImageFile, "__init__"),
    "load": (ImageFile.ImageFile, "load"),
    "exif": (ImageOps, "exif_transpose"),
    "convert": (Image.Image, "convert"),
}


@pytest.mark.parametrize("step", sorted(STEPS))
@pytest.mark.parametrize("failure", LIBRARY_FAILURES, ids=lambda f: type(f()).__name__)
def test_any_exception_of_the_image_library_is_one_line(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    step: str,
    failure: Callable[[], BaseException],
) -> None:
    path = tmp_path / "photo.png"
    Image.new("P", (4, 4)).save(path)  # a palette image: converted, so convert() is called

    def fail(*_args: object, **_kwargs: object) -> None:
        raise failure()

    owner, name = STEPS[step]
    monkeypatch.setattr(owner, name, fail)
    try:
        loaded, notes = load_image_with_notes(path)
    except ImageLoadError as error:
        message = str(error)
        assert message.startswith(f"{path}: ")
        assert message.isprintable()
        assert len(message) < 400
    else:
        # A failure in reading EXIF leaves the pixels usable: loaded, with a note saying so.
        assert step == "exif", f"{type(failure()).__name__} in {step} was swallowed"
        assert loaded.size == (4, 4)
        assert any("EXIF" in note for note in notes), notes


def _mutations(data: bytes, count: int, seed: int) -> Iterator[bytes]:
    """Seeded variations of ``data``: bytes changed in its header and body, cuts, insertions."""
    rng = random.Random(seed)  # noqa: S311 - reproducible damage, not secrets
    for index in range(count):
        mutated = bytearray(data)
        kind = index % 4
        if kind == 0:  # a few bytes of the header
            for _ in range(rng.randint(1, 3)):
                mutated[rng.randrange(min(len(mutated), 64))] = rng.randrange(256)
        elif kind == 1:  # anywhere
            for _ in range(rng.randint(1, 8)):
                mutated[rng.randrange(len(mutated))] = rng.randrange(256)
        elif kind == 2:  # cut short
            del mutated[rng.randrange(8, len(mutated)) :]
        else:  # bytes inserted
            position = rng.randrange(len(mutated))
            mutated[position:position] = rng.randbytes(rng.randint(1, 16))
        yield bytes(mutated)


FUZZED = ["PNG", "JPEG", "GIF", "BMP", "TIFF", "WEBP", "ICO", "PPM", "TGA", "SGI", "PCX", "QOI"]


@pytest.mark.parametrize("kind", FUZZED)
def test_damaged_files_give_an_image_or_one_line(
    kind: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_warning_escapes: None
) -> None:
    """Seeded damage to a small file of each format: an RGB image or an ImageLoadError, and
    nothing else: no other exception, no warning (a 1-megapixel limit keeps damaged sizes cheap).
    """
    monkeypatch.setattr(images, "MAX_PIXELS", 2**20)
    buffer = io.BytesIO()
    source = picture(24, 16)
    exif = Image.Exif()
    exif[0x0112] = 3
    options = {"exif": exif.tobytes()} if kind in ("PNG", "JPEG", "WEBP", "TIFF") else {}
    source.save(buffer, kind, **options)
    escaped = []
    for number, data in enumerate(_mutations(buffer.getvalue(), 60, seed=len(kind))):
        path = tmp_path / f"{number}.{kind.lower()}"
        path.write_bytes(data)
        try:
            assert load_image(path).mode == "RGB"
        except ImageLoadError as error:
            if not (str(error).startswith(f"{path}: ") and str(error).isprintable()):
                escaped.append(f"{path.name}: badly formed message {str(error)!r}")
        except Exception as error:  # noqa: BLE001 - what the test looks for
            escaped.append(f"{path.name}: {type(error).__name__}: {error}")
    assert escaped == []


# --- HEIC and AVIF ---------------------------------------------------------------------------

pillow_heif = pytest.importorskip("pillow_heif")


def heic(image: Image.Image, **options: object) -> bytes:
    """``image`` as a lossless HEIC (4:4:4), made by pillow-heif without registering it."""
    buffer = io.BytesIO()
    pillow_heif.from_pillow(image).save(buffer, quality=-1, chroma=444, **options)
    return buffer.getvalue()


def test_a_heic_photo_loads(tmp_path: Path, no_warning_escapes: None) -> None:
    path = tmp_path / "IMG_0001.HEIC"
    path.write_bytes(heic(picture()))
    assert path.read_bytes()[4:12] in (b"ftypheic", b"ftypheix")
    loaded, notes = load_image_with_notes(path)
    assert loaded.mode == "RGB"
    assert largest_difference(loaded, picture()) <= 2  # lossless but for YCbCr rounding
    assert notes == ()


def test_a_heic_photo_is_turned_once(tmp_path: Path) -> None:
    exif = Image.Exif()
    exif[0x0112] = 6
    path = tmp_path / "turned.heic"
    path.write_bytes(heic(picture(), exif=exif.tobytes()))
    loaded = load_image(path)
    assert largest_difference(loaded, picture().transpose(Image.Transpose.ROTATE_270)) <= 2


@pytest.mark.parametrize("keep", [0.5, 0.9])
def test_a_truncated_heic_is_refused_naming_the_format(tmp_path: Path, keep: float) -> None:
    data = heic(picture(256, 192))
    path = tmp_path / "cut.heic"
    path.write_bytes(data[: int(len(data) * keep)])
    reason = refusal(path)
    assert "HEIC" in reason, reason
    assert "not an image" not in reason


def test_a_heic_without_pillow_heif_is_refused_naming_the_format(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "pillow_heif", None)  # as if not installed
    monkeypatch.delitem(Image.OPEN, "HEIF", raising=False)
    monkeypatch.setattr(images, "_heif_opener", images._heif_opener.__wrapped__)
    path = tmp_path / "photo.heic"
    path.write_bytes(heic(picture()))
    assert refusal(path) == "HEIC image that cannot be decoded (pillow-heif is not installed)"


def test_field_report_phone_photo_is_refused_as_heic() -> None:
    """The field report holds a HEIC container without an image in it ("No 'iinf' box"): no
    decoder can read it, so it is refused, as a HEIC image, with libheif's reason."""
    path = FIELD_REPORTS / "phone_photo.heic"
    if not path.is_file():
        pytest.skip(f"{path} is not here")
    reason = refusal(path)
    assert reason.startswith("HEIC image that cannot be decoded ("), reason
    assert "iinf" in reason


@pytest.mark.skipif(not features.check("avif"), reason="this Pillow reads no AVIF")
def test_an_avif_photo_loads_and_a_truncated_one_is_named(
    tmp_path: Path, no_warning_escapes: None
) -> None:
    buffer = io.BytesIO()
    picture().save(buffer, "AVIF", quality=100)
    path = tmp_path / "photo.avif"
    path.write_bytes(buffer.getvalue())
    assert largest_difference(load_image(path), picture()) <= 8
    cut = tmp_path / "cut.avif"
    cut.write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    assert "AVIF" in refusal(cut)


def test_heif_support_is_loaded_only_for_heif_files(tmp_path: Path) -> None:
    """pillow-heif (about 0.1 s to import) is not imported with the engine, nor for a PNG."""
    png = tmp_path / "plain.png"
    picture().save(png)
    heif = tmp_path / "photo.heic"
    heif.write_bytes(heic(picture()))
    code = (
        "import sys; import visualizer.core; from visualizer.core import load_image; "
        "seen = ['pillow_heif' in sys.modules]; load_image(sys.argv[1]); "
        "seen.append('pillow_heif' in sys.modules); load_image(sys.argv[2]); "
        "seen.append('pillow_heif' in sys.modules); print(seen)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code, str(png), str(heif)],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    assert result.stdout.strip() == "[False, False, True]"


# --- warnings --------------------------------------------------------------------------------


def exif_with_two_resolutions(orientation: int) -> bytes:
    """EXIF whose XResolution and YResolution hold two values each (cameras that write them so
    make Pillow warn "tag 282 had too many entries")."""
    entries = [
        (0x0112, 3, 1, struct.pack("<HH", orientation, 0)),  # orientation, SHORT
        (0x011A, 5, 2, struct.pack("<I", 62)),  # XResolution: 2 RATIONALs at offset 62
        (0x011B, 5, 2, struct.pack("<I", 78)),  # YResolution: 2 RATIONALs at offset 78
    ]
    ifd = struct.pack("<H", len(entries))
    for tag, kind, count, value in entries:
        ifd += struct.pack("<HHI", tag, kind, count) + value
    ifd += struct.pack("<I", 0)
    data = struct.pack("<2sHI", b"II", 42, 8) + ifd  # 8 + 2 + 36 + 4 = 50 bytes
    data += b"\0" * (62 - len(data))
    data += struct.pack("<IIII", 72, 1, 72, 1) + struct.pack("<IIII", 72, 1, 72, 1)
    return b"Exif\0\0" + data


def test_malformed_exif_gives_no_warning_and_a_note(tmp_path: Path) -> None:
    path = tmp_path / "camera.jpg"
    picture().save(path, quality=95, exif=exif_with_two_resolutions(6))
    with warnings.catch_warnings(record=True) as raw:  # what Pillow says about it on its own
        warnings.simplefilter("always")
        with Image.open(path) as opened:
            ImageOps.exif_transpose(opened)
    assert any("had too many entries" in str(w.message) for w in raw)

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        loaded, notes = load_image_with_notes(path)
    assert loaded.size == (48, 64)  # its orientation (6) is still applied
    assert len(notes) == 1
    assert notes[0].startswith(f"{path}: malformed metadata (")
    assert "tag 282 had too many entries" in notes[0]
    assert "Metadata Warning" not in notes[0]


def test_field_report_malformed_exif_loads_without_warnings(
    recwarn: pytest.WarningsRecorder,
) -> None:
    path = FIELD_REPORTS / "exif_malformed_resolution.jpg"
    if not path.is_file():
        pytest.skip(f"{path} is not here")
    loaded = load_image(path)
    assert loaded.size == (64, 96)
    assert [str(w.message) for w in recwarn] == []


def test_warnings_from_other_code_are_given_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Only the image library's warnings are kept back; another's, given while an image is
    read (here: from a wrapped to_rgb), reach the caller as they came."""
    real = images.to_rgb

    def noisy(image: Image.Image) -> Image.Image:
        warnings.warn("from elsewhere", UserWarning, stacklevel=1)
        return real(image)

    monkeypatch.setattr(images, "to_rgb", noisy)
    path = tmp_path / "plain.png"
    picture().save(path)
    with pytest.warns(UserWarning, match="from elsewhere"):
        loaded, notes = load_image_with_notes(path)
    assert notes == ()
    assert largest_difference(loaded, picture()) == 0
