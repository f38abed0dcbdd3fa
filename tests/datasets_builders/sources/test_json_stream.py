"""Streamed JSON: items in file order one at a time, a broken file an input error naming it and
where, a transient read error left for the orchestrator to retry."""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import pytest

from datasets_builders.sources import json_stream
from datasets_builders.sources.contract import InputFormatError
from datasets_builders.sources.json_stream import json_events, json_items


def test_items_come_in_file_order_with_plain_python_numbers(tmp_path):
    doc = {"images": [{"id": 3, "w": 1.5}, {"id": 1, "w": 2}], "annotations": [{"image_id": 1}], "categories": []}
    (tmp_path / "a.json").write_text(json.dumps(doc))
    assert list(json_items(tmp_path / "a.json", "images.item")) == doc["images"]
    assert all(type(i["w"]) in (int, float) for i in json_items(tmp_path / "a.json", "images.item"))
    assert list(json_items(tmp_path / "a.json", "missing.item")) == []


def test_items_before_a_broken_tail_are_yielded_then_the_error_names_the_file_and_place(tmp_path, monkeypatch):
    path = tmp_path / "panoptic_train2017.json"
    path.write_text('{"annotations": [{"image_id": 1}, {"image_id": 2}, {"image_id": ')
    items = json_items(path, "annotations.item")
    assert next(items) == {"image_id": 1}
    with pytest.raises(InputFormatError) as e:
        list(items)
    assert str(e.value).startswith(f"{path}: not valid JSON (line 1, column 65: Expecting value)")
    monkeypatch.setattr(json_stream, "EXACT_WHERE_BYTES", 10)  # a big file: where the reader got to
    with pytest.raises(InputFormatError) as e:
        list(json_items(path, "annotations.item"))
    assert str(e.value).startswith(f"{path}: not valid JSON (before byte 64: parse error")
    with pytest.raises(InputFormatError, match="not valid JSON"):
        list(json_events(tmp_path / "panoptic_train2017.json"))


def test_a_missing_file_is_an_input_error_and_a_transient_one_escapes(tmp_path, monkeypatch):
    with pytest.raises(InputFormatError, match=r"nope\.json: cannot read"):
        list(json_items(tmp_path / "nope.json", "item"))
    (tmp_path / "a.json").write_text("[]")

    def open_(path, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
        raise OSError(errno.EIO, os.strerror(errno.EIO), str(path))

    monkeypatch.setattr(Path, "open", open_)
    with pytest.raises(OSError) as e:
        list(json_items(tmp_path / "a.json", "item"))
    assert e.value.errno == errno.EIO and not isinstance(e.value, InputFormatError)


def test_a_file_nested_too_deep_is_refused_before_ijson_walks_it(tmp_path):
    path = tmp_path / "instances.json"
    path.write_bytes(b'{"images": [], "categories": ' + b"[" * 100_000 + b"]" * 100_000 + b"}")
    with pytest.raises(InputFormatError) as e:
        list(json_items(path, "images.item"))
    assert str(e.value) == f"{path}: not usable JSON (nested more than 100 deep at byte 128)"


def test_brackets_and_escaped_quotes_inside_strings_do_not_count_whatever_the_chunking(monkeypatch, tmp_path):
    deep = 100
    inner = {"s": 'a \\" [[[[ {{{{ \\\\', "t": "]]]]"}
    for _ in range(deep - 2):
        inner = [inner]
    path = tmp_path / "a.json"
    path.write_text(json.dumps({"x": inner}))  # exactly 100 deep, with brackets in strings
    for chunk in (1, 3, 64, 1 << 20):
        monkeypatch.setattr(json_stream, "_DEPTH_CHUNK", chunk)
        json_stream._DEPTH_CHECKED.clear()
        assert len(list(json_items(path, "x"))) == 1
    path.write_text(json.dumps({"x": [inner]}))
    json_stream._DEPTH_CHECKED.clear()
    with pytest.raises(InputFormatError, match="nested more than 100 deep"):
        list(json_items(path, "x"))
