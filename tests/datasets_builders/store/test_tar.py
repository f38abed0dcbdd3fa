"""The shard's tar headers: the fast path is byte for byte what ``tarfile`` makes, names and sizes
of every kind (short, exactly 100 bytes, long, non-ASCII, past USTAR's 8 GiB)."""

from __future__ import annotations

import io
import tarfile

from hypothesis import given, settings
from hypothesis import strategies as st

from datasets_builders.store import tar

NAMES = st.one_of(st.text(alphabet=st.characters(min_codepoint=33, max_codepoint=126), min_size=1, max_size=140),
                  st.text(min_size=1, max_size=60).filter(lambda s: "\x00" not in s))
SIZES = st.one_of(st.integers(0, 10**7), st.sampled_from([0, 511, 512, 8**11 - 1, 8**11, 10**12]))


@settings(max_examples=3000, deadline=None)
@given(NAMES, SIZES)
def test_the_fast_header_is_tarfiles_header(name, size):
    assert tar.member_header(name, size) == tar._tarfile_header(name, size)


def test_tarfile_reads_back_what_the_fast_headers_describe():
    out = io.BytesIO()
    for name, data in (("k1.jpg", b"x" * 700), ("k1.json", b"{}"), ("a" * 100, b"y")):
        out.write(tar.member_header(name, len(data)) + data + tar.padding(len(data)))
    out.write(bytes(tar.END_OF_ARCHIVE))
    with tarfile.open(fileobj=io.BytesIO(out.getvalue())) as archive:
        assert [(m.name, m.size, m.mtime, m.mode) for m in archive.getmembers()] == [
            ("k1.jpg", 700, 0, 0o644), ("k1.json", 2, 0, 0o644), ("a" * 100, 1, 0, 0o644)]
