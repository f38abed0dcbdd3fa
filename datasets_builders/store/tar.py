"""Byte layout of a deterministic WebDataset shard.

Headers come from the standard library's ``tarfile`` (USTAR; a PAX record only for names over 100
bytes), with every field that could vary between runs pinned: mtime, uid/gid, user and group
names, mode. webdataset's own writer puts a float mtime into every member, which forces a 1 KiB
PAX header per member and makes bytes differ run to run; pinning avoids both. Everything here is
arithmetic on sizes, so the writer knows a shard's final size before it writes a byte.
"""

from __future__ import annotations

import tarfile
from collections.abc import Iterator

BLOCK = 512
RECORD = 20 * BLOCK  # tarfile and GNU tar pad archives to whole 10 KiB records
END_OF_ARCHIVE = 2 * BLOCK
FIXED_MTIME = 0


def member_header(name: str, size: int) -> bytes:
    """Tar header block(s) for a regular file member ``name`` of ``size`` bytes.

    The usual member (an ASCII name of at most 100 bytes, under 8 GiB) is patched into a template
    of the header ``tarfile`` makes for it, byte for byte the same (tests compare them): ``tarfile``
    builds each header through a PAX check and field-by-field encoding, a third of a shard
    writer's time per sample before this. Anything else goes through ``tarfile`` itself."""
    if size < _MAX_USTAR_SIZE and name.isascii() and len(name) <= _NAME_BYTES:
        block = bytearray(_TEMPLATE)
        block[: len(name)] = name.encode("ascii")
        block[124:136] = b"%011o\0" % size
        block[148:155] = b"%06o\0" % sum(block)  # checksum over the block with its field as spaces
        return bytes(block)
    return _tarfile_header(name, size)


def _tarfile_header(name: str, size: int) -> bytes:
    info = tarfile.TarInfo(name)
    info.size = size
    info.mtime = FIXED_MTIME
    info.mode = 0o644
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info.tobuf(tarfile.PAX_FORMAT, "utf-8", "strict")


_NAME_BYTES = 100  #: USTAR's name field
_MAX_USTAR_SIZE = 8**11  #: 11 octal digits
_TEMPLATE = _tarfile_header("", 0)[:148] + b" " * 8 + _tarfile_header("", 0)[156:]  #: checksum field blank


class ShardFormatError(ValueError):
    """The tar structure itself is damaged at a known offset."""


def walk(view: bytes | memoryview) -> Iterator[tuple[str, int, int]]:
    """Yield ``(name, data offset, size)`` of every member, strictly.

    ``tarfile`` treats a damaged header in the middle of an archive as a clean end of archive
    (it silently returns fewer members), so verification walks the headers itself: any bad
    checksum, truncation or non-zero end block raises :class:`ShardFormatError` with its offset.
    """
    pos, end, pax_name = 0, len(view), None
    while True:
        block = bytes(view[pos : pos + BLOCK])
        if len(block) < BLOCK:
            raise ShardFormatError(f"truncated: no end-of-archive marker (file ends at byte {end})")
        if block == bytes(BLOCK):
            rest = view[pos:]
            if len(rest) < END_OF_ARCHIVE or any(rest):
                raise ShardFormatError(f"damaged end of archive at byte {pos}")
            return
        try:
            info = tarfile.TarInfo.frombuf(block, "utf-8", "strict")
        except tarfile.HeaderError as e:
            raise ShardFormatError(f"invalid tar header at byte {pos}: {e}") from None
        data = pos + BLOCK
        if data + info.size > end:
            raise ShardFormatError(f"member {info.name!r} at byte {pos} runs past the end of the file")
        if info.type == tarfile.XHDTYPE:  # PAX record: carries the next member's long name
            pax_name = _pax_path(bytes(view[data : data + info.size]), pos)
        elif info.type in (tarfile.REGTYPE, tarfile.AREGTYPE):
            yield (pax_name or info.name), data, info.size
            pax_name = None
        else:
            raise ShardFormatError(f"member {info.name!r} at byte {pos} is not a regular file (type {info.type!r})")
        pos = data + info.size + (-info.size % BLOCK)


def _pax_path(records: bytes, pos: int) -> str | None:
    """The ``path`` value of a PAX extended header (records are ``"<len> key=value\\n"``)."""
    i = 0
    while i < len(records):
        length_text, _, _ = records[i:].partition(b" ")
        try:
            length = int(length_text)
            key, _, value = records[i + len(length_text) + 1 : i + length - 1].partition(b"=")
        except ValueError:
            raise ShardFormatError(f"malformed PAX header at byte {pos}") from None
        if length <= 0:
            raise ShardFormatError(f"malformed PAX header at byte {pos}")
        if key == b"path":
            return value.decode("utf-8")
        i += length
    return None


def padding(size: int) -> bytes:
    """Zero bytes that round a member's data up to a whole block."""
    return bytes(-size % BLOCK)


def closed_size(written: int) -> int:
    """Final archive size after ``written`` bytes of members: end blocks plus record padding."""
    total = written + END_OF_ARCHIVE
    return total + (-total % RECORD)


def trailer(written: int) -> bytes:
    """The bytes that close an archive whose members took ``written`` bytes."""
    return bytes(closed_size(written) - written)
