"""The CI subset of hostile_input: a few fuzzed files per builder and a few hostile shards per class,
each built for real in a forked child; any crash, hang, unnamed refusal or lost record fails."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.reliability.hostile_input import SCENARIOS

SEED = 20261203


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s.name for s in SCENARIOS])
def test_hostile_input_is_refused_or_rejected_with_reasons(scenario, tmp_path):
    outcome = scenario.run(scenario.ci_trials, SEED, tmp_path)
    outcome.check()


def _hang() -> tuple[bool, str, int]:
    while True:
        pass


def _crash() -> tuple[bool, str, int]:
    raise OverflowError("int too large to convert to float")


def test_the_harness_reports_a_hang_and_a_crash_as_not_survived():
    from tests.reliability.hostile_input import isolated

    survived, why, _ = isolated(_hang, timeout=1)
    assert not survived and why.startswith("hang")
    survived, why, _ = isolated(_crash)
    assert not survived and "crash: OverflowError" in why


# Regressions: inputs the fuzzing found that crashed a build before the fixes they name.

@pytest.fixture(scope="module")
def clean(tmp_path_factory):
    from tests.reliability.hostile_input import bases

    return bases(tmp_path_factory.mktemp("hostile"), SEED)


def _copy(clean, name, tmp_path):
    import shutil

    root = tmp_path / "raw"
    shutil.copytree(clean[name][0].root, root)
    return root


def test_json_nested_too_deep_is_refused_naming_the_file(clean, tmp_path):  # contract.read_json
    from tests.reliability.hostile_input import build_and_check, isolated

    root = _copy(clean, "vqa", tmp_path)
    (root / "v2_OpenEnded_mscoco_train2014_questions.json").write_text("[" * 100_000 + "]" * 100_000)
    assert isolated(build_and_check, "vqa", root, tmp_path / "out", None) == (True, "", 0)


def test_a_number_too_large_for_a_float_rejects_its_record(clean, tmp_path):  # build.MALFORMED
    import json

    from tests.reliability.hostile_input import build_and_check, isolated

    root = _copy(clean, "refcoco", tmp_path)
    doc = json.loads((root / "instances.json").read_text())
    for annotation in doc["annotations"]:
        annotation["bbox"] = [10**400, 0, 1, 1]
    (root / "instances.json").write_text(json.dumps(doc))
    assert isolated(build_and_check, "refcoco", root, tmp_path / "out", 1, r"OverflowError") == (True, "", 0)


def test_a_member_name_refused_twice_is_two_rejects_and_the_counts_reconcile(clean, tmp_path):  # img2dataset
    import tarfile

    from tests.reliability.hostile_input import _info, _members, _web_keys, build_and_check, isolated, write_tar

    root = _copy(clean, "image-text", tmp_path)
    entries = _members(root / "00000.tar")
    entries[1:1] = [(_info("evil", tarfile.SYMTYPE, "/etc/passwd"), b""), (_info("evil"), b"x")]
    write_tar(root / "00000.tar", entries)
    assert isolated(build_and_check, "image-text", root, tmp_path / "out", _web_keys(root), r"not a flat",
                    (), True) == (True, "", 0)


def test_a_ref_listed_twice_rejects_the_repeat_and_the_counts_reconcile(clean, tmp_path):  # refcoco
    import json

    from tests.reliability.hostile_input import build_and_check, isolated

    root = _copy(clean, "refcoco", tmp_path)
    refs = json.loads((root / "refs(unc).json").read_text())
    (root / "refs(unc).json").write_text(json.dumps([refs[0], *refs, refs[0]]))
    assert isolated(build_and_check, "refcoco", root, tmp_path / "out", len(refs) + 2,
                    r"occurs more than once") == (True, "", 0)


def test_text_that_is_not_storable_as_utf8_rejects_its_record(clean, tmp_path):  # build._convert
    import json

    from tests.reliability.hostile_input import _members, _web_keys, build_and_check, isolated, write_tar

    root = _copy(clean, "image-text", tmp_path)
    entries = _members(root / "00000.tar")
    name, data = next((i.name, d) for i, d in entries if i.name.endswith(".json"))
    doc = json.loads(data)
    doc["url"] = "\ud800"
    entries = [(i, json.dumps(doc).encode() if i.name == name else d) for i, d in entries]
    write_tar(root / "00000.tar", entries)
    assert isolated(build_and_check, "image-text", root, tmp_path / "out", _web_keys(root),
                    r"UnicodeEncodeError", (), True) == (True, "", 0)


# Hypothesis: any JSON value at any node of a builder's annotation file. The seeded mutator above
# gives the table its counts; this gives a failure its smallest input (hypothesis shrinks it).

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8)
JSON_BUILDERS = ("coco-panoptic", "refcoco", "vqa", "coco-captions", "llava", "unnatural-instructions")


def _replace_a_node(doc, data):
    """``doc`` with one node, chosen by hypothesis (descending mostly), replaced by a JSON value."""
    if isinstance(doc, dict | list) and doc and data.draw(st.integers(0, 7), label="descend") > 0:
        key = data.draw(st.sampled_from(sorted(doc) if isinstance(doc, dict) else range(len(doc))))
        doc[key] = _replace_a_node(doc[key], data)
        return doc
    return data.draw(JSON_VALUES, label="value")


@pytest.mark.parametrize("name", JSON_BUILDERS)
@settings(max_examples=8, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=st.data())
def test_any_json_value_anywhere_is_written_or_rejected_with_a_reason(name, clean, tmp_path_factory, data):
    import json
    import shutil

    from tests.reliability.hostile_input import build_and_check, expected_records, isolated

    work = tmp_path_factory.mktemp(f"hypothesis-{name}")
    root = work / "raw"
    shutil.copytree(clean[name][0].root, root)
    target = max((p for p in root.rglob("*.json*") if not p.name.endswith("_stats.json")), key=lambda p: p.stat().st_size)
    if target.suffix == ".jsonl":
        lines = target.read_text().splitlines()
        i = data.draw(st.integers(0, len(lines) - 1), label="line")
        lines[i] = json.dumps(_replace_a_node(json.loads(lines[i]), data))
        target.write_text("\n".join(lines) + "\n")
    else:
        target.write_text(json.dumps(_replace_a_node(json.loads(target.read_text()), data)))
    verdict = isolated(build_and_check, name, root, work / "out", expected_records(name, root))
    shutil.rmtree(work)
    assert verdict[0] and verdict[2] == 0, f"{target.name}: {verdict[1]} (lost {verdict[2]})"
