"""The tiny local tokenizer: lossless, markup-friendly, deterministic, cached, and never adding BOS/EOS."""

from __future__ import annotations

from pathlib import Path

import pytest
from transformers import PreTrainedTokenizerFast

from models import tokenizer as tk
from models.tokenizer import (
    FINGERPRINT_FILE,
    SPECIAL_TOKENS,
    load_tokenizer,
    sample_world_corpus,
    tiny_tokenizer,
    train_tokenizer,
)

ROUND_TRIP = [
    "[INST] <Img><ImageHere></Img> [refer] where is the red circle ?  [/INST]",
    "where is X ?  [/INST]",
    "<p>a blue circle</p> {<12><0><100><27>}<delim>{<1><2><3><4>}",
    "  leading and trailing spaces  ",
    "tabs\tand\nnew lines\r\n",
    "café, naïve, élan",
    "中文的图片 and 日本語",
    "emoji 😀🎨 and a ZWJ 👩‍👩‍👧",
    "don't , stop . ? ! -- it 's",
    "literal </s> and <s> and <pad> typed as text",
    "".join(chr(code) for code in range(1, 0x250)),
]


@pytest.fixture(scope="module")
def corpus() -> list[str]:
    return sample_world_corpus()


@pytest.fixture(scope="module")
def tokenizer(corpus: list[str]) -> PreTrainedTokenizerFast:
    return train_tokenizer(corpus)


def ids(tokenizer: PreTrainedTokenizerFast, text: str) -> list[int]:
    return tokenizer(text)["input_ids"]


def test_the_corpus_is_sorted_deduplicated_and_holds_sample_world_text_templates_and_markup(corpus: list[str]) -> None:
    assert corpus == sorted(set(corpus))
    assert len(corpus) > 500
    assert {"[INST]", "[/INST]", "<ImageHere>", "<delim>", "<0>", "<100>", "[refer]", "[detection]"} <= set(corpus)
    assert "[refer] where is {} ?" in corpus  # a template of instructions.yaml
    assert any("triangle" in text for text in corpus)  # sample-world annotations
    assert not any(text.endswith(".jpg") and " " not in text for text in corpus)  # file names are skipped
    assert sample_world_corpus(images=3) == sample_world_corpus(images=3)


@pytest.mark.parametrize("text", ROUND_TRIP)
def test_decoding_an_encoding_gives_back_the_exact_string(tokenizer: PreTrainedTokenizerFast, text: str) -> None:
    assert tokenizer.decode(ids(tokenizer, text)) == text


def test_the_special_tokens_are_ids_0_to_3_and_set_on_the_wrapper(tokenizer: PreTrainedTokenizerFast) -> None:
    assert tokenizer.convert_tokens_to_ids(list(SPECIAL_TOKENS)) == [0, 1, 2, 3]
    assert (tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.unk_token_id, tokenizer.pad_token_id) == (
        0, 1, 2, 3)
    assert len(tokenizer) == 2048  # the corpus has enough distinct pairs to reach the size asked for
    assert tokenizer.model_max_length == 1 << 20


def test_encoding_adds_no_bos_or_eos(tokenizer: PreTrainedTokenizerFast) -> None:
    text = "[INST] <Img><ImageHere></Img> [vqa] what colour is the square? [/INST]"
    plain = ids(tokenizer, text)
    assert plain == tokenizer(text, add_special_tokens=False)["input_ids"] == tokenizer.encode(text)
    assert 0 not in plain and 1 not in plain


def test_special_token_strings_typed_in_text_stay_plain_text(tokenizer: PreTrainedTokenizerFast) -> None:
    # MiniGPT-v2 appends a literal "</s>" for the slow LLaMA tokenizer to parse; our prompt code appends
    # the EOS id instead, so a "</s>" in user text must never become EOS.
    encoded = ids(tokenizer, "a red square </s> <s> <pad> <unk>")
    assert not set(encoded) & {0, 1, 2, 3}
    assert tokenizer.decode([5, tokenizer.eos_token_id]).endswith("</s>")
    assert tokenizer.decode([5, tokenizer.eos_token_id], skip_special_tokens=True) == tokenizer.decode([5])


def test_markup_is_markup_friendly(tokenizer: PreTrainedTokenizerFast) -> None:
    # Byte-level pre-tokenisation splits digits from punctuation, so a box is at best
    # "{<" 47 "><" 24 "><" 65 "><" 67 ">}" = 9 tokens.
    assert len(ids(tokenizer, "{<47><24><65><67>}")) <= 9
    assert len(ids(tokenizer, "[INST] <Img>")) <= 6
    assert len(ids(tokenizer, "<Img><ImageHere></Img>")) <= 7
    for identifier in ("[vqa]", "[caption]", "[grounding]", "[refer]", "[identify]", "[detection]"):
        assert len(ids(tokenizer, identifier)) <= 3, identifier
    for corner in range(101):
        assert len(ids(tokenizer, str(corner))) == 1, corner


def test_training_twice_on_the_same_texts_gives_the_same_tokenizer(corpus: list[str],
                                                                   tokenizer: PreTrainedTokenizerFast) -> None:
    assert train_tokenizer(corpus).backend_tokenizer.to_str() == tokenizer.backend_tokenizer.to_str()
    assert train_tokenizer(corpus[:200], vocab_size=512).backend_tokenizer.to_str() == train_tokenizer(
        corpus[:200], vocab_size=512).backend_tokenizer.to_str()


def test_tiny_tokenizer_caches_and_retrains_when_the_vocab_size_changes(
        tmp_path: Path, tokenizer: PreTrainedTokenizerFast, monkeypatch: pytest.MonkeyPatch) -> None:
    first = tiny_tokenizer(tmp_path)
    assert first.backend_tokenizer.to_str() == tokenizer.backend_tokenizer.to_str()
    assert (tmp_path / "tokenizer.json").is_file() and (tmp_path / FINGERPRINT_FILE).is_file()

    def no_training(*args: object, **kwargs: object) -> None:
        raise AssertionError("a matching cache must be loaded, not retrained")

    with monkeypatch.context() as patch:
        patch.setattr(tk, "train_tokenizer", no_training)
        second = tiny_tokenizer(tmp_path)
    assert second.get_vocab() == first.get_vocab()
    assert second.backend_tokenizer.to_str() == first.backend_tokenizer.to_str()
    assert ids(second, "a </s> b") == ids(first, "a </s> b")  # split_special_tokens survives the save
    assert second.eos_token_id == 1 and second.pad_token_id == 3

    smaller = tiny_tokenizer(tmp_path, vocab_size=1024)
    assert len(smaller) == 1024
    assert len(load_tokenizer(tmp_path)) == 1024


def test_tiny_tokenizer_retrains_over_a_damaged_cache(tmp_path: Path) -> None:
    tiny_tokenizer(tmp_path, vocab_size=512)
    (tmp_path / "tokenizer.json").write_text("not json", "utf-8")
    assert len(tiny_tokenizer(tmp_path, vocab_size=512)) == 512
    assert len(load_tokenizer(tmp_path)) == 512


def test_load_tokenizer_on_a_missing_or_empty_folder_raises_value_error_naming_it(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-tokenizer"
    with pytest.raises(ValueError, match="expected a save_pretrained folder") as raised:
        load_tokenizer(missing)
    assert f"tokenizer folder {missing} " in str(raised.value)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match="expected a save_pretrained folder") as raised:
        load_tokenizer(empty)
    assert f"tokenizer folder {empty} " in str(raised.value)
