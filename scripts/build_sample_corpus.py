"""Build the sample corpus the package ships for the README's main job.

Source: WordNet 3.0 (Debian ``wordnet-base``), whose licence allows redistribution with its
notice (kept in ``indexer/samples/WORDNET-LICENSE.md``). One document per noun synset from a few
everyday categories: title = its lemma, text = its gloss and examples, metadata = category and
synonyms. Seeded, so the file is rebuilt byte for byte:

    python scripts/build_sample_corpus.py indexer/samples/wordnet-sample.jsonl
"""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path

from albatross.training.corpus import WORDNET_DIR, gloss_text, parse_wordnet_line

# WordNet lexicographer file numbers (lexnames) of the categories the demo draws from.
CATEGORIES = {5: "animal", 13: "food", 20: "plant", 6: "artifact", 15: "location", 8: "body", 27: "substance"}
PER_CATEGORY = 300
SEED = 7


def common_synsets() -> set[str]:
    """Offsets of the most frequent sense of every noun seen in WordNet's sense-tagged corpus.

    ``index.noun`` lines read: lemma pos synset_cnt p_cnt [pointers] sense_cnt tagsense_cnt offsets;
    the first offset is the lemma's most frequent sense. Drawing from these keeps the demo on words
    a reader knows ("violin", not "pollard").
    """
    common = set()
    for line in (WORDNET_DIR / "index.noun").read_text(encoding="utf-8").splitlines():
        if line.startswith(" "):
            continue
        fields = line.split()
        pointer_count = int(fields[3])
        tagged = int(fields[5 + pointer_count])
        if tagged > 0:
            common.add(fields[6 + pointer_count])
    return common


def sample_documents() -> list[dict[str, object]]:
    common = common_synsets()
    by_category: dict[str, list[dict[str, object]]] = {name: [] for name in CATEGORIES.values()}
    for line in (WORDNET_DIR / "data.noun").read_text(encoding="utf-8").splitlines():
        synset = parse_wordnet_line(line)
        category = CATEGORIES.get(int(line.split()[1])) if synset else None
        if synset is None or category is None or line.split()[0] not in common:
            continue
        text = gloss_text(synset)
        by_category[category].append(
            {
                "_id": f"wn-{line.split()[0]}",
                "title": synset.lemmas[0],
                "text": text,
                "metadata": {"category": category, "synonyms": list(synset.lemmas[1:])},
            }
        )
    rng = random.Random(SEED)
    chosen = [doc for docs in by_category.values() for doc in rng.sample(docs, min(PER_CATEGORY, len(docs)))]
    return sorted(chosen, key=lambda doc: str(doc["_id"]))


def main(out: str) -> None:
    lines = [json.dumps(doc, ensure_ascii=False) for doc in sample_documents()]
    Path(out).write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(f"wrote {len(lines)} documents to {out}")


if __name__ == "__main__":
    main(sys.argv[1])
