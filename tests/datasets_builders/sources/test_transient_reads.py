"""A read error that may pass (EIO on a flaky mount) escapes the readers so the orchestrator can retry
it; a lasting one (no permission) stays an input error or a reject, as bad input does."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from datasets_builders.sources.contract import InputFormatError, RecordError, is_transient, read_json
from datasets_builders.sources.images import load_image


def failing_open(monkeypatch, code: int) -> None:
    def open_(path, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
        raise OSError(code, os.strerror(code), str(path))

    monkeypatch.setattr(Path, "open", open_)


def test_is_transient_follows_the_cause_chain():
    wrapped = RuntimeError("writing shard 3 failed")
    wrapped.__cause__ = OSError(errno.ESTALE, "stale handle")
    assert is_transient(wrapped) and is_transient(TimeoutError()) and not is_transient(PermissionError(errno.EACCES, "no"))


def test_a_transient_error_escapes_read_json_and_load_image(tmp_path, monkeypatch):
    (tmp_path / "a.json").write_text("[]")
    (tmp_path / "a.png").write_bytes(b"not read")
    failing_open(monkeypatch, errno.EIO)
    with pytest.raises(OSError) as e:
        read_json(tmp_path / "a.json")
    assert e.value.errno == errno.EIO and not isinstance(e.value, InputFormatError)
    with pytest.raises(OSError) as e:
        load_image(tmp_path / "a.png")
    assert e.value.errno == errno.EIO


def test_a_lasting_error_stays_an_input_error_or_a_reject(tmp_path, monkeypatch):
    (tmp_path / "a.json").write_text("[]")
    (tmp_path / "a.png").write_bytes(b"not read")
    failing_open(monkeypatch, errno.EACCES)
    with pytest.raises(InputFormatError, match="a.json: cannot read"):
        read_json(tmp_path / "a.json")
    with pytest.raises(RecordError, match="cannot be read"):
        load_image(tmp_path / "a.png")
