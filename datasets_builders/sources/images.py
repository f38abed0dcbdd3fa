"""Image files of raw datasets: found, fully decoded once, and stored as the original bytes.

Builders never re-encode, crop or pad: a JPEG or PNG goes into the shard byte for byte, so the
boxes stay true. Decoding the whole file is what catches truncated images before training does;
pixel counts are capped (Pillow's decompression-bomb limit becomes an error). Records come
sorted by image, so a small cache makes an image shared by many records cost one decode.
"""

from __future__ import annotations

import io
import os
import warnings
from collections import OrderedDict
from pathlib import Path

from PIL import Image as PILImage

from datasets_builders.formats.schema import Image
from datasets_builders.sources.contract import InputFormatError, RecordError, is_transient

STORED_FORMATS = {"JPEG": "jpg", "PNG": "png"}
MAX_PIXELS = 64 * 1024 * 1024  # a larger "image" is refused as a possible decompression bomb
_CACHE: OrderedDict[tuple[str, int, int], Image] = OrderedDict()
_CACHE_SIZE = 8


def find_image_dir(root: Path, file_name: str, *, max_depth: int = 3) -> Path:
    """The folder under ``root`` (itself included) that holds ``file_name``: raw datasets put
    images in differently named folders (``train2017/``, ``images/train2014/``, ``flickr30k-images/``)."""
    seen: set[Path] = set()
    for folder, dirs, files in os.walk(root, followlinks=True):  # image folders are often symlinks
        real = Path(folder).resolve()
        if real in seen:  # a link back up the tree
            dirs[:] = []
            continue
        seen.add(real)
        depth = len(Path(folder).relative_to(root).parts)
        if file_name in files:
            return Path(folder)
        dirs[:] = sorted(d for d in dirs if not d.startswith(".")) if depth < max_depth else []
    raise InputFormatError(f"{root}: no folder (up to {max_depth} levels down) holds the image {file_name!r}")


def load_image(path: Path, expect_size: tuple[int, int] | None = None) -> Image:
    """The image at ``path`` as stored bytes plus its size; RecordError(stage "image") says why not."""
    try:
        stat = path.stat()
    except FileNotFoundError:
        raise RecordError(f"image file {path} is missing", "image") from None
    except OSError as e:
        if is_transient(e):
            raise  # a retry may read it
        raise RecordError(f"image file {path} cannot be read ({e})", "image") from None
    cache_key = (str(path), stat.st_mtime_ns, stat.st_size)
    image = _CACHE.get(cache_key)
    if image is None:
        image = _decode(path)
        _CACHE[cache_key] = image
        if len(_CACHE) > _CACHE_SIZE:
            _CACHE.popitem(last=False)
    if expect_size is not None and (image.width, image.height) != tuple(expect_size):
        raise RecordError(f"image {path} is {image.width}x{image.height} but the annotation says "
                          f"{expect_size[0]}x{expect_size[1]}; its boxes would be wrong", "image")
    return image


def decode_file(path: Path, what: str) -> tuple[bytes, PILImage.Image]:
    """The bytes of ``path`` and the fully decoded picture; RecordError(stage "image") naming
    ``what`` and the reason when it is missing, unreadable, truncated or too large."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise RecordError(f"{what} {path} is missing", "image") from None
    except OSError as e:
        if is_transient(e):
            raise  # a retry may read it
        raise RecordError(f"{what} {path} cannot be read ({e})", "image") from None
    return data, decode_bytes(data, f"{what} {path}")


def decode_bytes(data: bytes, where: str) -> PILImage.Image:
    """Fully decode encoded image bytes (from a file or a tar member named by ``where``)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", PILImage.DecompressionBombWarning)
            picture = PILImage.open(io.BytesIO(data))
            if picture.width * picture.height > MAX_PIXELS:
                raise RecordError(f"{where} has {picture.width}x{picture.height} pixels, over the {MAX_PIXELS} limit",
                                  "image")
            picture.load()  # the full decode: a truncated file fails here, not in a training worker
    except RecordError:
        raise
    except (OSError, SyntaxError, ValueError, PILImage.DecompressionBombWarning, PILImage.DecompressionBombError) as e:
        raise RecordError(f"{where} cannot be decoded ({type(e).__name__}: {e})", "image") from None
    return picture


def image_from_bytes(data: bytes, where: str, expect_size: tuple[int, int] | None = None) -> Image:
    """Encoded bytes (e.g. a tar member) as a stored Image, checked like :func:`load_image`."""
    picture = decode_bytes(data, where)
    if picture.format not in STORED_FORMATS:
        raise RecordError(f"{where} is {picture.format}; only JPEG and PNG are stored (as their original bytes)", "image")
    if expect_size is not None and picture.size != tuple(expect_size):
        raise RecordError(f"{where} is {picture.width}x{picture.height} but the annotation says "
                          f"{expect_size[0]}x{expect_size[1]}; its boxes would be wrong", "image")
    return Image(data, STORED_FORMATS[picture.format], picture.width, picture.height)


def _decode(path: Path) -> Image:
    try:
        data = path.read_bytes()
    except OSError as e:
        if is_transient(e):
            raise  # a retry may read it
        raise RecordError(f"image file {path} cannot be read ({e})", "image") from None
    return image_from_bytes(data, f"image {path}")
