"""OK-VQA as okvqa.allenai.org ships it -> [vqa].

OK-VQA is VQA v2's format under other names: per COCO subtype (``train2014``, ``val2014``) a
questions file ``OpenEnded_mscoco_<subtype>_questions.json`` and an annotations file
``mscoco_<subtype>_annotations.json`` (ten answers per question, each with ``raw_answer`` and the
processed ``answer``), in the input folder or one folder below it, COCO 2014 images in
``<subtype>/COCO_<subtype>_<id:012d>.jpg``. The VQA v2 reader does the work (``vqa``); only the
names differ. Choices where the files leave room: the processed ``answer`` is what counts (as
MiniGPT-v2 reads ``ok_vqa`` through its VQA v2 class, minigptv2-data-spec.md 5); OK-VQA has no
``multiple_choice_answer``, so a tie among the most frequent answers goes to the alphabetically
first; ``question_type`` (OK-VQA's knowledge category, ``one`` .. ``ten``) is kept in the
sample's meta as the question family.
"""

from __future__ import annotations

import re
from pathlib import Path

from datasets_builders.sources import vqa
from datasets_builders.sources.contract import Options

NAME = "okvqa"
VERSION = "1"
OPTIONS = ()
NAMING = vqa.Naming(NAME, re.compile(r"^OpenEnded_mscoco_(.+)_questions\.json$"), "mscoco_{}_annotations.json",
                    "expected OK-VQA files OpenEnded_mscoco_<subtype>_questions.json (with "
                    "mscoco_<subtype>_annotations.json), here or one folder down")


def locate(path: Path, options: Options) -> vqa.Layout:
    return vqa.locate_files(path, NAMING)


read_records = vqa.read_records
to_samples = vqa.to_samples
