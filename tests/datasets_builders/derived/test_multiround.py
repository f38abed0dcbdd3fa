"""Multi-round conversations: structure, token budget, determinism and provenance."""

from __future__ import annotations

import pytest
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

from datasets_builders.build import build_dataset
from datasets_builders.derived.multiround import TASKS, token_counter
from datasets_builders.sources.contract import InputFormatError, Options
from datasets_builders.store import ShardDataset, verify_dataset

IMAGE_TASKS = ("coco-panoptic", "flickr30k-entities", "refcoco", "vqa", "coco-captions")
OPENERS = ("[refer]", "[identify]", "[grounding]", "[detection]", "[vqa]", "[caption]", "Provide multiple")


def build(task_datasets, out, **options):
    return build_dataset("multiround", [task_datasets[n] for n in IMAGE_TASKS], out, options=Options(**options))


def samples(result):
    return list(ShardDataset(result.root).samples())


def test_each_image_becomes_a_conversation_of_different_tasks_each_with_its_identifier(task_datasets, tmp_path):
    result = build(task_datasets, tmp_path / "mr", min_turns=2, max_turns=4)
    counts = result.manifest.counts
    assert counts.read == 20 and counts.written == 20 and verify_dataset(result.root).ok
    inputs = {n: {s.key: s for s in ShardDataset(task_datasets[n]).samples()} for n in IMAGE_TASKS}
    lengths = set()
    for sample in samples(result):
        rounds = sample.meta["rounds"]
        lengths.add(len(rounds))
        assert 2 <= len(rounds) <= 4 and len(sample.turns) == 2 * len(rounds)
        assert len({r["task"] for r in rounds}) == len(rounds)  # different tasks
        assert len({(r["source"]["dataset"], r["source"]["id"]) for r in rounds}) == len(rounds)
        for i, r in enumerate(rounds):
            question, answer = sample.turns[2 * i : 2 * i + 2]
            assert question.role == "user" and answer.role == "assistant"
            assert question.content.startswith(OPENERS), question.content
            origin = inputs[r["dataset"]][r["key"]]  # provenance names a real sample holding this pair
            assert (question, answer) == tuple(origin.turns[2 * r["round"] : 2 * r["round"] + 2])
            assert origin.image.data == sample.image.data and origin.split == sample.split
        assert sample.extras["crayon.png"]  # the image's crayon map travels with it
    assert lengths == {2, 3, 4}


def test_answers_stay_within_the_token_budget_or_the_image_is_rejected(task_datasets, tmp_path):
    count = token_counter(None)
    result = build(task_datasets, tmp_path / "mr", token_budget=30, min_turns=2, max_turns=4)
    for sample in samples(result):
        spent = sum(count(t.content) for t in sample.turns[1::2])
        assert spent == sample.meta["answer_tokens"] <= 30
    counts = result.manifest.counts
    assert counts.read == counts.records_written + counts.records_rejected == 20


def test_the_word_proxy_counts_letters_runs_digits_and_marks_plus_the_end_token():
    count = token_counter(None)
    assert count("{<47><24><65><67>}") == 18 + 1
    assert count("two red circles") == 3 + 1


def test_a_local_tokenizer_counts_exactly(tmp_path):
    vocab = {"[UNK]": 0, "red": 1, "circle": 2}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]").save_pretrained(tmp_path / "tok")
    assert token_counter(str(tmp_path / "tok"))("red circle red") == 3 + 1
    with pytest.raises(InputFormatError, match="no such tokenizer folder"):
        token_counter(str(tmp_path / "nope"))


def test_output_is_a_function_of_seed_and_inputs_not_of_their_order(task_datasets, tmp_path):
    a = build(task_datasets, tmp_path / "a", seed=5)
    b = build(task_datasets, tmp_path / "b", seed=5)
    assert [s.read_bytes() for s in sorted(a.root.glob("*.tar"))] == [s.read_bytes() for s in sorted(b.root.glob("*.tar"))]
    shuffled = build_dataset("multiround", [task_datasets[n] for n in reversed(IMAGE_TASKS)], tmp_path / "c",
                             options=Options(seed=5))
    key = lambda s: s.key  # noqa: E731
    assert [(s.key, s.turns) for s in sorted(samples(a), key=key)] == [(s.key, s.turns) for s in sorted(samples(shuffled), key=key)]
    other_seed = build(task_datasets, tmp_path / "d", seed=6)
    assert [s.turns for s in sorted(samples(a), key=key)] != [s.turns for s in sorted(samples(other_seed), key=key)]


def test_the_task_mix_is_a_parameter_and_images_with_too_few_tasks_are_rejected(task_datasets, tmp_path):
    result = build(task_datasets, tmp_path / "mr", tasks=("refer", "vqa", "caption"), min_turns=3, max_turns=3)
    for sample in samples(result):
        assert sorted(r["task"] for r in sample.meta["rounds"]) == ["caption", "refer", "vqa"]
    counts = result.manifest.counts
    assert counts.read == counts.records_written + counts.records_rejected
    with pytest.raises(InputFormatError, match="unknown tasks"):
        build(task_datasets, tmp_path / "x", tasks=("dance",))
    with pytest.raises(InputFormatError, match="min_turns"):
        build(task_datasets, tmp_path / "y", min_turns=1)
    assert set(TASKS) >= {"refer", "identify", "grounding", "vqa", "caption", "crayon"}


def test_an_uncommitted_input_is_refused_in_one_line(task_datasets, tmp_path):
    (tmp_path / "half").mkdir()
    with pytest.raises(InputFormatError, match="not a committed dataset"):
        build_dataset("multiround", [task_datasets["vqa"], tmp_path / "half"], tmp_path / "out")


def describe(image: bytes, instruction: str) -> str:
    """A stand-in for a trained model: a deterministic answer that shows what it was given."""
    return f"{instruction.split(']')[0][1:]} of an image of {len(image)} bytes"


def pseudo(task_datasets, out, labeler=describe, **options):
    return build_dataset("multiround", [task_datasets["refcoco"], task_datasets["vqa"]], out,
                         options=Options(pseudo_label_tasks=("caption", "grounding"), pseudo_label_checkpoint="ckpt@1",
                                         pseudo_labeler=labeler, min_turns=3, max_turns=4, **options))


def test_tasks_an_image_has_no_truth_for_are_answered_by_the_model_and_marked(task_datasets, tmp_path):
    from datasets_builders.templates.render import pools

    result = pseudo(task_datasets, tmp_path / "mr")
    assert result.manifest.counts.written > 0 and verify_dataset(result.root).ok
    assert result.manifest.spec.parameters["pseudo_label_checkpoint"] == "ckpt@1"
    seen = set()
    for sample in samples(result):
        rounds = sample.meta["rounds"]
        assert sample.meta["pseudo_labelled"] == sum(r["pseudo_label"] for r in rounds)
        for i, r in enumerate(rounds):
            question, answer = sample.turns[2 * i : 2 * i + 2]
            if r["pseudo_label"]:
                seen.add(r["task"])
                assert r["task"] in ("caption", "grounding") and r["labeler"] == "ckpt@1" and r["source"] is None
                assert question.content in pools()[r["task"]]  # an instruction of the task's own pool
                assert answer.content == describe(sample.image.data, question.content)  # the image it is about
            else:
                assert r["task"] in ("refer", "identify", "vqa") and r["source"]["dataset"] in ("refcoco", "vqa")
    assert seen == {"caption", "grounding"}


def test_pseudo_labels_need_a_model_and_a_task_whose_instruction_needs_no_truth(task_datasets, tmp_path):
    with pytest.raises(InputFormatError, match="exist only for caption, grounding"):
        build_dataset("multiround", [task_datasets["vqa"]], tmp_path / "a",
                      options=Options(pseudo_label_tasks=("vqa",), pseudo_label_checkpoint="c", pseudo_labeler=describe))
    with pytest.raises(InputFormatError, match="needs --pseudo-label-checkpoint"):
        build_dataset("multiround", [task_datasets["vqa"]], tmp_path / "b", options=Options(pseudo_label_tasks=("caption",)))


def test_a_failing_or_silent_model_rejects_the_image_with_the_reason(task_datasets, tmp_path):
    def broken(image: bytes, instruction: str) -> str:
        raise RuntimeError("CUDA out of memory")

    result = pseudo(task_datasets, tmp_path / "broken", labeler=broken)
    counts = result.manifest.counts
    assert counts.written == 0 and counts.records_rejected == counts.read > 0
    from datasets_builders.store.index import REJECTS_SCHEMA, read_table

    reasons = read_table(result.root / "rejects.parquet", REJECTS_SCHEMA).column("reason").to_pylist()
    assert all("the pseudo-label model failed on [" in r and "CUDA out of memory" in r for r in reasons)
    silent = pseudo(task_datasets, tmp_path / "silent", labeler=lambda image, instruction: " ")
    reasons = read_table(silent.root / "rejects.parquet", REJECTS_SCHEMA).column("reason").to_pylist()
    assert reasons and all("the pseudo-label model gave an empty [" in r for r in reasons)
    assert all(s.meta["pseudo_labelled"] == 0 for s in samples(silent))
