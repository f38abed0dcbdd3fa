"""A tiny byte-level BPE tokenizer trained locally, so tests and the demo never download one.

The corpus is every text of the generated sample world (64 images, its JSON/JSONL/TXT files and
the text members of its tar shards), every template of ``instructions.yaml`` and MiniGPT-v2's
markup (``[INST]``, ``<Img><ImageHere></Img>``, task identifiers, ``{<x><y><x><y>}`` boxes,
``<p></p>``, ``<delim>``). As in MiniGPT-v2 the markup stays plain text; the only special tokens
are ``<s> </s> <unk> <pad>`` (ids 0..3), never added by ``encode`` (the prompt code adds BOS/EOS
ids itself), and a literal "</s>" typed in text is split like any text (``split_special_tokens``).
Cost, 2048 tokens: about 1.5 s the first time in a process (writing the 64-image sample world
dominates; the corpus is then memoised), BPE training itself about 0.05 s; ``tiny_tokenizer(cache_dir)``
reuses a saved copy whose fingerprint (corpus, vocab size, ``VERSION``) matches.
"""

from __future__ import annotations

import hashlib
import json
import re
import tarfile
import tempfile
from collections.abc import Iterable, Iterator
from functools import cache
from pathlib import Path
from typing import Any

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import AutoTokenizer, PreTrainedTokenizerFast

SPECIAL_TOKENS = ("<s>", "</s>", "<unk>", "<pad>")
VERSION = "1"  # bump when the corpus or training recipe changes: cached tokenizers then retrain
MAX_LENGTH = 1 << 20
FINGERPRINT_FILE = "crayonflow-tokenizer-fingerprint.txt"
TASKS = ("vqa", "caption", "grounding", "refer", "identify", "detection")
_FILE_NAME = re.compile(r"^\S+\.(jpe?g|png|json|jsonl|txt|xml|parquet|tar)$", re.IGNORECASE)


def _markup() -> list[str]:
    boxes = [f"{{<{v}><{v * 37 % 101}><{v * 53 % 101}><{v * 71 % 101}>}}" for v in range(101)]
    pieces = ["[INST]", "[/INST]", "<Img>", "<ImageHere>", "</Img>", "{", "}", "<p>", "</p>", "<delim>",
              "[INST] <Img><ImageHere></Img> ", " [/INST]", "<p>the object</p> " + boxes[0] + "<delim>" + boxes[1]]
    return pieces + [f"[{task}]" for task in TASKS] + [f"<{v}>" for v in range(101)] + boxes


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, dict):
        value = list(value.values())
    if isinstance(value, list):
        for item in value:
            yield from _strings(item)
    elif isinstance(value, str) and not _FILE_NAME.match(value):
        yield value


def _file_texts(name: str, data: bytes) -> Iterator[str]:
    text = data.decode("utf-8")
    if name.endswith(".txt"):
        yield text
    else:  # .json: one document; .jsonl: one per line
        for document in [text] if name.endswith(".json") else filter(str.strip, text.splitlines()):
            yield from _strings(json.loads(document))


@cache
def _corpus(images: int, seed: int) -> tuple[str, ...]:
    from datasets_builders.sample_world.world import write_sample_world
    from datasets_builders.templates.render import pools

    texts: set[str] = set(_markup())
    texts.update(template for pool in pools().values() for template in pool)
    with tempfile.TemporaryDirectory(prefix="crayonflow-tokenizer-") as tmp:
        write_sample_world(Path(tmp), images=images, seed=seed)
        for path in sorted(Path(tmp).rglob("*")):
            if path.suffix in (".json", ".jsonl", ".txt"):  # images, XML and parquet hold no new text
                texts.update(_file_texts(path.name, path.read_bytes()))
            elif path.suffix == ".tar":
                with tarfile.open(path) as tar:
                    for member in tar.getmembers():
                        if member.isfile() and member.name.endswith((".json", ".txt")):
                            texts.update(_file_texts(member.name, tar.extractfile(member).read()))
    return tuple(sorted(text for text in texts if text.strip()))


def sample_world_corpus(images: int = 64, seed: int = 0) -> list[str]:
    """Sorted, de-duplicated texts (deterministic for (images, seed))."""
    return list(_corpus(images, seed))


def train_tokenizer(texts: Iterable[str], vocab_size: int = 2048) -> PreTrainedTokenizerFast:
    """Byte-level BPE on ``texts``; ``decode(encode(s)) == s`` for any string; same texts, same merges."""
    backend = Tokenizer(models.BPE(unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=list(SPECIAL_TOKENS), show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    backend.train_from_iterator(list(texts), trainer=trainer)
    return PreTrainedTokenizerFast(tokenizer_object=backend, bos_token="<s>", eos_token="</s>", unk_token="<unk>",
                                   pad_token="<pad>", model_max_length=MAX_LENGTH, split_special_tokens=True,
                                   clean_up_tokenization_spaces=False)


def _fingerprint(texts: Iterable[str], vocab_size: int) -> str:
    digest = hashlib.sha256(f"crayonflow-tokenizer v{VERSION} vocab={vocab_size}".encode())
    for text in texts:
        digest.update(b"\x00" + text.encode("utf-8"))
    return digest.hexdigest()


def tiny_tokenizer(cache_dir: Path | None = None, *, vocab_size: int = 2048) -> PreTrainedTokenizerFast:
    """``train_tokenizer(sample_world_corpus())``, loaded from ``cache_dir`` when its fingerprint matches."""
    texts = sample_world_corpus()
    if cache_dir is None:
        return train_tokenizer(texts, vocab_size)
    cache_dir = Path(cache_dir)
    fingerprint = _fingerprint(texts, vocab_size)
    stamp = cache_dir / FINGERPRINT_FILE
    if stamp.is_file() and stamp.read_text("utf-8").strip() == fingerprint:
        try:
            return load_tokenizer(cache_dir)
        except ValueError:
            pass  # damaged cache: retrain over it
    tokenizer = train_tokenizer(texts, vocab_size)
    cache_dir.mkdir(parents=True, exist_ok=True)
    stamp.unlink(missing_ok=True)  # first: a half-written cache never matches
    tokenizer.save_pretrained(cache_dir)
    stamp.write_text(fingerprint + "\n", "utf-8")
    return tokenizer


def load_tokenizer(path: Path) -> PreTrainedTokenizerFast:
    """A tokenizer saved with ``save_pretrained``; nothing is downloaded."""
    path = Path(path)
    try:
        if not path.is_dir():
            raise FileNotFoundError("no such folder")
        tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        if not isinstance(tokenizer, PreTrainedTokenizerFast):
            raise TypeError(f"it holds a {type(tokenizer).__name__}, not a fast tokenizer")
    except Exception as error:  # transformers raises OSError, ValueError, KeyError... by case
        raise ValueError(f"tokenizer folder {path} could not be loaded ({error}): "
                         "expected a save_pretrained folder") from error
    return tokenizer
