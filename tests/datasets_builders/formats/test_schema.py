"""The sample contract: validated at construction, round-trips through its members."""

from __future__ import annotations

import json

import pytest

from datasets_builders.formats.schema import Sample, SampleError, Source, Turn
from tests.builds import make_samples


def test_sample_contract_is_enforced_at_construction():
    user = Turn("user", "hi")
    with pytest.raises(SampleError, match="needs user/assistant pairs"):
        Sample("k", "caption", (user,), Source("d", "1"))
    with pytest.raises(SampleError, match="turn 1 has role 'user'"):
        Sample("k", "caption", (user, user), Source("d", "1"))
    with pytest.raises(SampleError, match="task 'Caption!'"):
        Sample("k", "Caption!", (user, Turn("assistant", "yo")), Source("d", "1"))
    with pytest.raises(SampleError, match="extra member extension 'json'"):
        Sample("k", "caption", (user, Turn("assistant", "yo")), Source("d", "1"), extras={"json": b"{}"})


def test_members_round_trip_to_an_equal_sample():
    for sample in make_samples(12):
        members = sample.members()
        assert Sample.from_members(sample.key, members) == sample
        doc = json.loads(members["json"])
        assert doc["image"] is None if sample.image is None else doc["image"]["format"] in members
        assert doc["extras"] == sorted(sample.extras)


def test_json_member_is_deterministic_bytes():
    a, b = make_samples(3), make_samples(3)
    assert [s.members() for s in a] == [s.members() for s in b]
    assert b" " not in a[0].members()["json"].split(b'"content"')[0]  # compact encoding


def test_a_json_member_naming_a_missing_image_is_refused():
    sample = make_samples(1)[0]
    members = sample.members()
    del members["jpg"]
    with pytest.raises(SampleError, match="json names a jpg image but there is no jpg member"):
        Sample.from_members(sample.key, members)
