"""MiniGPT-v2's ``blip_caption`` text normalisation, applied where the spec says (section 5).

Lowercase; ``. ! " ( ) * # : ; ~`` become spaces; runs of whitespace collapse; at most 50 words.
Captions, VQA questions and answers, REC/REG expressions, LLaVA detail/reason instructions and both
sides of Unnatural Instructions go through it; Flickr, LLaVA answers and conversations do not.
"""

from __future__ import annotations

import re

MAX_WORDS = 50
_PUNCT = re.compile(r"[.!\"()*#:;~]")
_SPACES = re.compile(r"\s{2,}")


def blip_normalise(text: str, max_words: int = MAX_WORDS) -> str:
    text = _SPACES.sub(" ", _PUNCT.sub(" ", text.lower())).strip()
    words = text.split(" ")
    return " ".join(words[:max_words]) if len(words) > max_words else text
