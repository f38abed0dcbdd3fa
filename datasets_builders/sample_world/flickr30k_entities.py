"""The world as Flickr30k Entities: bracket-annotated sentences, box XML, split lists, images.

Chain ids run across the whole dataset in order of first mention, as the real ids do; phrases
that name nothing in the picture use chain 0 (``notvisual``) and get no XML entry. A box that
several chains refer to (an object, the group it belongs to, "the leftmost shape") is written
once with one ``<name>`` per chain. XML boxes are 1-based and inclusive, like the real files.
"""

from __future__ import annotations

from pathlib import Path

from datasets_builders.sample_world.common import WorldImage, by_split, write_text
from datasets_builders.sample_world.language import Mention, Sentence, entity_sentences

SALT = 2
FIRST_FLICKR_ID = 1_000_000_000
TYPES = {"thing": "other", "group": "other", "extreme": "other", "light": "other", "stuff": "scene"}


def flickr_id(image: WorldImage) -> int:
    return FIRST_FLICKR_ID + image.index


def write(world: list[WorldImage], out_dir: Path, seed: int) -> None:
    next_chain = 1
    for image in world:
        fid = flickr_id(image)
        image.place(out_dir / "flickr30k-images" / f"{fid}.jpg")
        sentences = entity_sentences(image.scene, image.rng(SALT))
        chains: dict[tuple, int] = {}
        for part in (p for s in sentences for p in s):
            if isinstance(part, Mention) and part.target[0] != "notvisual" and part.target not in chains:
                chains[part.target] = next_chain
                next_chain += 1
        write_text(out_dir / "Sentences" / f"{fid}.txt", "".join(line(s, chains) + "\n" for s in sentences))
        write_text(out_dir / "Annotations" / f"{fid}.xml", annotation(image, fid, chains))
    for split, images in by_split(world).items():
        write_text(out_dir / f"{split}.txt", "".join(f"{flickr_id(i)}\n" for i in images))


def line(sentence: Sentence, chains: dict[tuple, int]) -> str:
    """One sentence as written in ``Sentences/*.txt``: ``[/EN#3/other A red circle] is ... .``"""
    words = []
    for i, part in enumerate(sentence):
        text = part.words if isinstance(part, Mention) else part
        text = text[0].upper() + text[1:] if i == 0 else text
        if isinstance(part, Mention):
            kind = part.target[0]
            chain, label = (0, "notvisual") if kind == "notvisual" else (chains[part.target], TYPES[kind])
            text = f"[/EN#{chain}/{label} {text}]"
        words.append(text)
    return " ".join(words) + " ."


def annotation(image: WorldImage, fid: int, chains: dict[tuple, int]) -> str:
    """``Annotations/*.xml``: boxed chains first (one object per box), then unboxed ones."""
    names_by_box: dict[int, list[int]] = {}  # thing segment -> chain ids that include its box
    unboxed: list[tuple[int, int]] = []  # (chain id, scene flag)
    for target, chain in chains.items():
        kind, *segments = target
        if kind in ("thing", "group", "extreme"):
            for segment in segments:
                names_by_box.setdefault(segment, []).append(chain)
        else:
            unboxed.append((chain, 1 if kind == "stuff" else 0))
    things = {t.segment_id: t for t in image.scene.things}
    lines = [
        "<annotation>",
        f"\t<filename>{fid}.jpg</filename>",
        "\t<size>",
        f"\t\t<width>{image.width}</width>",
        f"\t\t<height>{image.height}</height>",
        "\t\t<depth>3</depth>",
        "\t</size>",
    ]
    for segment, names in sorted(names_by_box.items(), key=lambda item: min(item[1])):
        x, y, w, h = things[segment].bbox
        lines += ["\t<object>", *(f"\t\t<name>{n}</name>" for n in sorted(names)), "\t\t<bndbox>"]
        lines += [f"\t\t\t<xmin>{x + 1}</xmin>", f"\t\t\t<ymin>{y + 1}</ymin>"]
        lines += [f"\t\t\t<xmax>{x + w}</xmax>", f"\t\t\t<ymax>{y + h}</ymax>", "\t\t</bndbox>", "\t</object>"]
    for chain, scene in unboxed:
        lines += ["\t<object>", f"\t\t<name>{chain}</name>", f"\t\t<scene>{scene}</scene>"]
        lines += [f"\t\t<nobndbox>{1 - scene}</nobndbox>", "\t</object>"]
    return "\n".join(lines + ["</annotation>"]) + "\n"
