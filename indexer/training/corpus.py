"""Offline English training text for distillation.

Every text comes from something installed on the build machine through apt or pip, so the
corpus can be rebuilt without network access:

- WordNet 3.0 (apt ``wordnet-base``): glosses, example sentences, lemma names, and
  query-like strings generated from lemmas ("what is a harbor", "harbor meaning").
- GCIDE (apt ``dict-gcide``): definitions and quotations from the Collaborative
  International Dictionary of English.
- ``/usr/share/doc``: prose paragraphs of READMEs, NEWS files and changelogs.
- Docstrings of installed Python packages (parsed with ``ast``, never imported).

The mix deliberately contains both query-length strings and passages of roughly 40-120 words,
because the encoder must embed both sides of a search.  Nothing is ever read from an
evaluation set.
"""

from __future__ import annotations

import ast
import gzip
import json
import logging
import random
import re
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

WORDNET_DIR = Path("/usr/share/wordnet")
GCIDE_PATH = Path("/usr/share/dictd/gcide.dict.dz")
DOC_DIR = Path("/usr/share/doc")

#: Licence of each source family, copied into the model card.
LICENCES: dict[str, str] = {
    "wordnet": "WordNet 3.0 licence (permissive, BSD-like), Princeton University",
    "gcide": "GPL-3.0-or-later (GCIDE); used only as training input, not redistributed",
    "doc": "mixed free-software licences; see /usr/share/doc/<package>/copyright",
    "docstring": "mixed OSI licences of the installed PyPI packages (BSD/MIT/Apache-2.0 mostly)",
}

#: How many texts to draw from each sub-source (before de-duplication).  Queries and short
#: strings are cheap for the teacher; passages dominate the token count.
DEFAULT_QUOTAS: dict[str, int] = {
    "wordnet/query": 22_000,
    "wordnet/lemma": 6_000,
    "wordnet/gloss": 16_000,
    "wordnet/passage": 16_000,
    "wordnet/example": 10_000,
    "gcide/definition": 20_000,
    "gcide/quotation": 6_000,
    "gcide/passage": 10_000,
    "doc/paragraph": 8_000,
    "docstring/paragraph": 12_000,
}

#: The subset that is labelled by the teacher and trained on: the first N texts of each source in
#: corpus order (a random sample, since the corpus is shuffled).  Sized for a shared 2-core CPU,
#: where the teacher labels roughly 1,000 tokens per core-second: ~70k texts, ~1.4M tokens.
#: A faster machine can raise these up to DEFAULT_QUOTAS without rebuilding the corpus.
TRAIN_QUOTAS: dict[str, int] = {
    "wordnet/query": 20_000,
    "wordnet/lemma": 4_000,
    "wordnet/gloss": 10_000,
    "wordnet/passage": 8_000,
    "wordnet/example": 6_000,
    "gcide/definition": 8_000,
    "gcide/quotation": 3_000,
    "gcide/passage": 2_500,
    "doc/paragraph": 3_500,
    "docstring/paragraph": 4_500,
}

PASSAGE_MAX_WORDS = 90  # keeps passages inside a 128-token training window for both tokenizers


@dataclass(frozen=True)
class Synset:
    """One WordNet synset: part of speech, lemma names, definition and example sentences."""

    pos: str
    lemmas: tuple[str, ...]
    definition: str
    examples: tuple[str, ...]


@dataclass(frozen=True)
class Text:
    """One training text and the sub-source it came from (``family/kind``)."""

    text: str
    source: str


def parse_wordnet_line(line: str) -> Synset | None:
    """Parse one line of a WordNet ``data.<pos>`` file; licence header lines give ``None``."""
    if line.startswith(" ") or "|" not in line:
        return None
    head, gloss = line.split("|", 1)
    fields = head.split()
    pos = fields[2]
    n_words = int(fields[3], 16)
    lemmas = tuple(
        re.sub(r"\(.*\)$", "", fields[4 + 2 * i]).replace("_", " ") for i in range(n_words)
    )
    # The gloss is "definition; "example one"; "example two"".
    parts = [p.strip() for p in gloss.strip().split(";")]
    examples = tuple(p.strip('"').strip() for p in parts if p.startswith('"'))
    definition = "; ".join(p for p in parts if p and not p.startswith('"'))
    return Synset(pos, lemmas, definition, examples)


def read_wordnet(wordnet_dir: Path = WORDNET_DIR) -> list[Synset]:
    """All synsets of the four ``data.*`` files."""
    synsets = []
    for name in ("noun", "verb", "adj", "adv"):
        with open(wordnet_dir / f"data.{name}", encoding="utf-8", errors="replace") as f:
            synsets.extend(s for s in map(parse_wordnet_line, f) if s is not None)
    return synsets


def wordnet_query(lemma: str, pos: str, rng: random.Random) -> str:
    """A short search-like string about ``lemma``, templated by part of speech."""
    if pos == "n":
        article = "an" if lemma[0].lower() in "aeiou" else "a"
        templates = [f"what is {article} {lemma}", f"{lemma} meaning", f"define {lemma}",
                     f"{lemma} definition", f"what does {lemma} mean", f"examples of {lemma}",
                     f"types of {lemma}", f"{lemma}"]
    elif pos == "v":
        templates = [f"how to {lemma}", f"what does it mean to {lemma}", f"{lemma} meaning",
                     f"define {lemma}", f"why do people {lemma}", f"{lemma} synonym"]
    else:
        templates = [f"what does {lemma} mean", f"{lemma} meaning", f"{lemma} synonym",
                     f"define {lemma}", f"opposite of {lemma}"]
    return rng.choice(templates)


def wordnet_texts(synsets: list[Synset], rng: random.Random) -> dict[str, list[str]]:
    """Candidate texts per WordNet sub-source (unsampled)."""
    out: dict[str, list[str]] = {k: [] for k in
                                 ("query", "lemma", "gloss", "passage", "example")}
    for s in synsets:
        lemma = rng.choice(s.lemmas)
        out["query"].append(wordnet_query(lemma, s.pos, rng))
        out["lemma"].append(", ".join(s.lemmas[:4]))
        out["gloss"].append(s.definition)
        out["example"].extend(s.examples)
        if s.examples or len(s.definition.split()) > 12:
            body = f"{lemma}: {s.definition}." + "".join(f" {e}." for e in s.examples)
            out["passage"].append(_clip_words(body, PASSAGE_MAX_WORDS))
    return out


_GCIDE_HEAD = re.compile(r"^\S.*\\.*\\")  # "Arrive \Ar*rive"\, v. t."
_GCIDE_NOISE = re.compile(r"\[(1913 Webster|WordNet 1\.5|PJC|Obs\.|R\.|Archaic)[^\]]*\]")
_GCIDE_AUTHOR = re.compile(r"\s*--\s*[A-Z][\w. ]*\.?\s*$")


@dataclass(frozen=True)
class GcideEntry:
    """One GCIDE headword with its definitions and its quotations, cleaned of markup."""

    headword: str
    definitions: tuple[str, ...]
    quotations: tuple[str, ...]


def parse_gcide(text: str) -> Iterator[GcideEntry]:
    """Split the GCIDE dict text into entries.

    Entries start with an unindented ``Word \\Syl*la*bles\\, pos.`` line; paragraphs are separated
    by blank lines; quotations are indented more deeply than definitions and end with
    ``--Author.``.
    """
    headword, defs, quotes = "", [], []
    for para in re.split(r"\n\s*\n", text):
        lines = para.split("\n")
        if _GCIDE_HEAD.match(lines[0]):
            if headword and (defs or quotes):
                yield GcideEntry(headword, tuple(defs), tuple(quotes))
            headword, defs, quotes = lines[0].split("\\")[0].strip(), [], []
            lines = lines[1:]
            # the head paragraph's own body (e.g. "One who arrives.") is a definition
        body = _clean_gcide(" ".join(line.strip() for line in lines))
        if not headword or len(body.split()) < 3 or body.startswith(("Syn:", "Note:")):
            continue
        indent = len(lines[0]) - len(lines[0].lstrip()) if lines else 0
        if indent >= 8:
            quotes.append(_GCIDE_AUTHOR.sub("", body))
        else:
            defs.append(re.sub(r"^\(?\d+\.\)?\s*(\([a-z]\)\s*)?", "", body))
    if headword and (defs or quotes):
        yield GcideEntry(headword, tuple(defs), tuple(quotes))


def _clean_gcide(s: str) -> str:
    s = _GCIDE_NOISE.sub("", s)
    # Etymologies and inflections sit in (possibly nested) brackets: drop innermost first;
    # a dangling "]" means the bracket opened on the skipped head line.
    while re.search(r"\[[^\[\]]*\]", s):
        s = re.sub(r"\[[^\[\]]*\]", "", s)
    s = s.rsplit("]", 1)[-1]
    s = s.replace("{", "").replace("}", "").replace("\\", "")
    return re.sub(r"\s+", " ", s).strip()


def gcide_texts(entries: Iterable[GcideEntry]) -> dict[str, list[str]]:
    """Candidate texts per GCIDE sub-source (unsampled)."""
    out: dict[str, list[str]] = {"definition": [], "quotation": [], "passage": []}
    for e in entries:
        defs = [d for d in e.definitions if len(d.split()) >= 4 and d[0].isalpha()]
        out["definition"].extend(defs)
        out["quotation"].extend(q for q in e.quotations if len(q.split()) >= 5)
        body = " ".join(defs)
        if len(body.split()) >= 30:
            out["passage"].append(_clip_words(f"{e.headword}. {body}", PASSAGE_MAX_WORDS))
    return out


def is_prose(paragraph: str) -> bool:
    """True for a paragraph that reads like English sentences, not code, tables or lists."""
    words = paragraph.split()
    if not len(words) >= 8 or not paragraph[0].isupper():
        return False
    letters = sum(c.isalpha() or c.isspace() for c in paragraph)
    if letters / len(paragraph) < 0.88 or not paragraph.rstrip().endswith((".", "?", "!")):
        return False
    codey = sum(any(ch in w for ch in "=(){}[]<>/_|#`*$@\\") for w in words)
    return codey / len(words) < 0.08


def prose_paragraphs(text: str) -> Iterator[str]:
    """Blank-line separated paragraphs of ``text`` that pass :func:`is_prose`, clipped."""
    for para in re.split(r"\n\s*\n", text):
        joined = re.sub(r"\s+", " ", para).strip()
        if joined and is_prose(joined):
            yield _clip_words(joined, PASSAGE_MAX_WORDS)


def doc_texts(doc_dir: Path = DOC_DIR) -> list[str]:
    """Prose paragraphs from README/NEWS/changelog/text files under ``/usr/share/doc``."""
    out: list[str] = []
    for path in sorted(doc_dir.rglob("*")):
        name = path.name.lower()
        if not path.is_file() or not re.search(r"readme|news|changelog|\.txt|\.md|\.rst", name):
            continue
        try:
            raw = gzip.decompress(path.read_bytes()) if name.endswith(".gz") else path.read_bytes()
        except (OSError, EOFError, gzip.BadGzipFile):
            continue
        out.extend(prose_paragraphs(raw[:2_000_000].decode("utf-8", errors="replace")))
    return out


def docstring_texts(roots: Iterable[Path]) -> list[str]:
    """Prose paragraphs from module/class/function docstrings of the ``.py`` files under roots."""
    out: list[str] = []
    for root in roots:
        for path in sorted(root.rglob("*.py")):
            try:
                tree = ast.parse(path.read_text(encoding="utf-8"))
            except (SyntaxError, UnicodeDecodeError, ValueError, OSError):
                continue
            for node in ast.walk(tree):
                if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef,
                                     ast.AsyncFunctionDef)):
                    doc = ast.get_docstring(node)
                    if doc:
                        out.extend(prose_paragraphs(doc))
    return out


def _clip_words(text: str, max_words: int) -> str:
    words = text.split()
    return text if len(words) <= max_words else " ".join(words[:max_words])


def sample_corpus(candidates: dict[str, list[str]], quotas: dict[str, int],
                  seed: int) -> list[Text]:
    """Draw up to ``quotas[source]`` de-duplicated texts per source, then shuffle all.

    De-duplication is global and case-insensitive (the vocabulary is lowercased), so a gloss
    that also appears as a GCIDE definition is kept once, under the first source drawn.
    """
    rng = random.Random(seed)
    seen: set[str] = set()
    texts: list[Text] = []
    for source in sorted(quotas):
        pool = list(dict.fromkeys(candidates.get(source, [])))
        rng.shuffle(pool)
        taken = 0
        for t in pool:
            key = t.lower().strip()
            if taken >= quotas[source] or not key or key in seen:
                continue
            seen.add(key)
            texts.append(Text(t, source))
            taken += 1
    rng.shuffle(texts)
    return texts


def gather_candidates(seed: int, site_packages: Iterable[Path]) -> dict[str, list[str]]:
    """Read every source once and return its candidate texts keyed by ``family/kind``."""
    rng = random.Random(seed)
    candidates: dict[str, list[str]] = {}
    for kind, items in wordnet_texts(read_wordnet(), rng).items():
        candidates[f"wordnet/{kind}"] = items
    # dictzip is gzip-compatible; the whole dictionary is ~40 MB of text.
    raw = gzip.decompress(GCIDE_PATH.read_bytes()).decode("utf-8", errors="replace")
    for kind, items in gcide_texts(parse_gcide(raw)).items():
        candidates[f"gcide/{kind}"] = items
    candidates["doc/paragraph"] = doc_texts()
    candidates["docstring/paragraph"] = docstring_texts(site_packages)
    for k, v in sorted(candidates.items()):
        log.info("candidates %-22s %7d", k, len(v))
    return candidates


def build_corpus(path: Path, seed: int, site_packages: Iterable[Path],
                 quotas: dict[str, int] | None = None) -> list[Text]:
    """Build the corpus and write it as JSON lines (``{"text", "source"}``) to ``path``."""
    texts = sample_corpus(gather_candidates(seed, site_packages), quotas or DEFAULT_QUOTAS, seed)
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        for t in texts:
            f.write(json.dumps({"text": t.text, "source": t.source}) + "\n")
    tmp.replace(path)
    return texts


def load_corpus(path: Path) -> list[Text]:
    """Read a corpus written by :func:`build_corpus`."""
    with open(path, encoding="utf-8") as f:
        return [Text(**json.loads(line)) for line in f]


def select(texts: list[Text], quotas: dict[str, int]) -> list[Text]:
    """The first ``quotas[source]`` texts of each source, keeping corpus order."""
    taken: Counter[str] = Counter()
    out = []
    for t in texts:
        if taken[t.source] < quotas.get(t.source, 0):
            taken[t.source] += 1
            out.append(t)
    return out


def source_counts(texts: Iterable[Text]) -> dict[str, int]:
    """Number of texts per sub-source, for the model card."""
    return dict(sorted(Counter(t.source for t in texts).items()))
