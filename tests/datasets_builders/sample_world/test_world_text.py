"""The sample world's texts in every format are true of their pictures (read by ``truth.py``)."""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET

from datasets_builders.sample_world.world import split_of
from tests.datasets_builders.sample_world.small_world import IMAGES, SPLITS, load
from tests.datasets_builders.sample_world.truth import check_answer, denotes


def test_flickr_boxes_chains_and_sentences(world, scenes):
    phrase = re.compile(r"\[/EN#(\d+)/(\w+) ([^\]]+)\]")
    for image_id, scene in scenes.items():
        fid = 1_000_000_000 + image_id - 1
        root = ET.parse(world / f"flickr30k-entities/Annotations/{fid}.xml").getroot()
        assert root.findtext("filename") == f"{fid}.jpg"
        assert (int(root.findtext("size/width")), int(root.findtext("size/height"))) == scene.size
        boxes: dict[int, list[tuple[int, ...]]] = {}
        unboxed: dict[int, str] = {}  # chain -> <scene> flag
        multi_named = 0
        for obj in root.findall("object"):
            names = [int(n.text) for n in obj.findall("name")]
            multi_named += len(names) > 1
            if obj.find("bndbox") is not None:
                b = obj.find("bndbox")
                x0, y0, x1, y1 = (int(b.findtext(k)) for k in ("xmin", "ymin", "xmax", "ymax"))
                for name in names:
                    boxes.setdefault(name, []).append((x0 - 1, y0 - 1, x1 - x0 + 1, y1 - y0 + 1))
            else:
                assert obj.findtext("nobndbox") == str(1 - int(obj.findtext("scene")))
                assert len(names) == 1
                unboxed[names[0]] = obj.findtext("scene")
        lines = (world / f"flickr30k-entities/Sentences/{fid}.txt").read_text().splitlines()
        assert len(lines) == 5
        for line in lines:
            assert line.endswith(" .") and "  " not in line and line == line.strip()
            for chain, kind, words in phrase.findall(line):
                chain = int(chain)
                assert kind == "notvisual" or chain in boxes or chain in unboxed, (line, chain)
                if kind == "notvisual":
                    assert chain == 0
                elif kind == "scene":
                    assert unboxed[chain] == "1"
                elif words == "soft light":
                    assert unboxed[chain] == "0"
                elif kind == "other" and words.lower().split()[0] in ("a", "an"):  # one named object
                    (box,) = boxes[chain]
                    (thing,) = [t for t in scene.things if t.bbox == box]
                    assert words.lower().split()[1:] == thing.name.split()
                elif kind == "other" and "most" in words or "biggest" in words:
                    assert [t.bbox for t in denotes(scene, words)] == boxes[chain]
        assert {b for chain in boxes.values() for b in chain} == {t.bbox for t in scene.things}
        if len(scene.things) > 1:
            assert multi_named >= len(scene.things)  # each box is in its own chain and the group's
            assert any(len(b) == len(scene.things) for b in boxes.values())


def test_refcoco_refs_single_out_their_object(world, scenes):
    instances = load(world / "refcoco/instances.json")
    anns = {a["id"]: a for a in instances["annotations"]}
    assert len(anns) == len(instances["annotations"]) == sum(len(s.things) for s in scenes.values())
    refs = load(world / "refcoco/refs(unc).json")
    assert len(refs) == len(anns)  # one ref per object
    assert [r["ref_id"] for r in refs] == list(range(len(refs)))
    sent_ids = [s["sent_id"] for r in refs for s in r["sentences"]]
    assert len(set(sent_ids)) == len(sent_ids)
    for ref in refs:
        ann, scene = anns[ref["ann_id"]], scenes[ref["image_id"]]
        (thing,) = [t for t in scene.things if list(t.bbox) == ann["bbox"]]
        assert ann["area"] == thing.area and ref["category_id"] == ann["category_id"]
        assert ref["file_name"] == f"COCO_train2014_{ref['image_id']:012d}_{ref['ann_id']}.jpg"
        assert 1 <= len(ref["sentences"]) <= 3 and ref["sent_ids"] == [s["sent_id"] for s in ref["sentences"]]
        assert len({s["raw"] for s in ref["sentences"]}) == len(ref["sentences"])
        for s in ref["sentences"]:
            assert denotes(scene, s["raw"]) == [thing], s["raw"]
            assert s["sent"] == s["raw"].lower() and s["tokens"] == s["sent"].split()


def test_vqa_answers_are_true(world, scenes):
    for split in SPLITS:
        questions = load(world / f"vqa/v2_OpenEnded_mscoco_{split}2014_questions.json")
        annotations = load(world / f"vqa/v2_mscoco_{split}2014_annotations.json")
        assert questions["data_subtype"] == annotations["data_subtype"] == f"{split}2014"
        by_id = {a["question_id"]: a for a in annotations["annotations"]}
        assert [q["question_id"] for q in questions["questions"]] == list(by_id)
        per_image: dict[int, int] = {}
        for q in questions["questions"]:
            ann = by_id[q["question_id"]]
            assert q["question_id"] // 1000 == q["image_id"] == ann["image_id"]
            answers = [a["answer"] for a in ann["answers"]]
            assert [a["answer_id"] for a in ann["answers"]] == list(range(1, 11))
            assert max(set(answers), key=answers.count) == ann["multiple_choice_answer"]
            assert answers.count(ann["multiple_choice_answer"]) >= 8
            check_answer(scenes[q["image_id"]], q["question"], ann["multiple_choice_answer"])
            per_image[q["image_id"]] = per_image.get(q["image_id"], 0) + 1
        assert all(3 <= n <= 5 for n in per_image.values())


def test_captions_mention_every_object(world, scenes):
    ids = []
    for split in SPLITS:
        doc = load(world / f"coco-captions/annotations/captions_{split}2017.json")
        for image in doc["images"]:
            texts = [a["caption"] for a in doc["annotations"] if a["image_id"] == image["id"]]
            assert len(texts) == 5
            for text in texts:
                assert all(t.name in text for t in scenes[image["id"]].things), text
        ids += [a["id"] for a in doc["annotations"]]
    assert len(ids) == len(set(ids)) == 5 * IMAGES


def test_llava_conversations_are_well_formed_and_true(world, scenes):
    for name, rounds in (("conversation_58k", (2, 4)), ("detail_23k", (1, 1)), ("complex_reasoning_77k", (1, 1))):
        entries = load(world / f"llava/{name}.json")
        assert entries
        for entry in entries:
            assert entry["image"] == f"{entry['id']}.jpg" and split_of(int(entry["id"]) - 1) == "train"
            turns = entry["conversations"]
            assert [t["from"] for t in turns] == ["human", "gpt"] * (len(turns) // 2)
            assert rounds[0] <= len(turns) // 2 <= rounds[1]
            assert turns[0]["value"].startswith("<image>\n")
            assert not any("<image>" in t["value"] for t in turns[1:])
            scene = scenes[int(entry["id"])]
            for question, answer in zip(turns[::2], turns[1::2]):
                if m := re.fullmatch(r"(?:<image>\n)?What color is (.+)\?", question["value"]):
                    assert answer["value"].endswith(f" is {denotes(scene, m[1])[0].colour}.")


def test_unnatural_instructions_jsonl_has_one_record_per_line(world):
    lines = (world / "unnatural-instructions/core_data.jsonl").read_text().splitlines()
    assert len(lines) == IMAGES
    for line in lines:
        record = json.loads(line)
        assert set(record) == {"instruction", "instances"}
        assert set(record["instances"][0]) == {"instruction_with_input", "input", "constraints", "output"}
