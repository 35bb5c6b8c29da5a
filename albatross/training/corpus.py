"""Offline English training text for distillation.

Every text comes from something installed on the build machine through apt or pip, so the
corpus can be rebuilt without network access:

- WordNet 3.0 (apt ``wordnet-base``): glosses, example sentences, lemma names, web-style
  queries written from each synset's topic ("what do parrots eat", "symptoms of measles") and
  encyclopedia-like articles from its gloss, broader and narrower terms (``webstyle``).
- GCIDE (apt ``dict-gcide``): definitions and quotations from the Collaborative
  International Dictionary of English.
- FOLDOC (apt ``dict-foldoc``): encyclopedia entries of the Free On-line Dictionary of Computing.
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

from albatross.training.webstyle import Concept, article, web_query

log = logging.getLogger(__name__)

WORDNET_DIR = Path("/usr/share/wordnet")
GCIDE_PATH = Path("/usr/share/dictd/gcide.dict.dz")
DOC_DIR = Path("/usr/share/doc")
FOLDOC_PATH = Path("/usr/share/dictd/foldoc.dict.dz")

#: Licence of each source family, copied into the model card.
LICENCES: dict[str, str] = {
    "wordnet": "WordNet 3.0 licence (permissive, BSD-like), Princeton University",
    "gcide": "GPL-3.0-or-later (GCIDE); used only as training input, not redistributed",
    "foldoc": "GNU FDL 1.1 or later (Free On-line Dictionary of Computing, Denis Howe); training "
              "input only",
    "doc": "mixed free-software licences; see /usr/share/doc/<package>/copyright",
    "docstring": "mixed OSI licences of the installed PyPI packages (BSD/MIT/Apache-2.0 mostly)",
}

#: How many texts to draw from each sub-source (before de-duplication).  Queries and short
#: strings are cheap for the teacher; passages dominate the token count.
DEFAULT_QUOTAS: dict[str, int] = {
    "wordnet/query": 80_000,
    "wordnet/article": 60_000,
    "wordnet/lemma": 6_000,
    "wordnet/gloss": 30_000,
    "wordnet/passage": 30_000,
    "wordnet/example": 15_000,
    "gcide/definition": 50_000,
    "gcide/quotation": 8_000,
    "gcide/passage": 20_000,
    "foldoc/passage": 8_000,
    "doc/paragraph": 8_000,
    "docstring/paragraph": 25_000,
}

#: The subset that is labelled by the teacher and trained on: the first N texts of each source in
#: corpus order (a random sample, since the corpus is shuffled).  ~190k texts, ~8M tokens: the
#: teacher labels them in about half an hour on two cores, and a 6,000-step run sees each about once, which generalises
#: better than many epochs over fewer texts (the first build's 69.5k texts were seen ~7 times and
#: the student matched the teacher far better on them than on web passages).  Web-style queries
#: and encyclopedia-like articles lead because search traffic looks like them.
TRAIN_QUOTAS: dict[str, int] = {
    "wordnet/query": 55_000,
    "wordnet/article": 40_000,
    "wordnet/lemma": 4_000,
    "wordnet/gloss": 12_000,
    "wordnet/passage": 12_000,
    "wordnet/example": 8_000,
    "gcide/definition": 20_000,
    "gcide/quotation": 4_000,
    "gcide/passage": 15_000,
    "foldoc/passage": 5_000,
    "doc/paragraph": 6_000,
    "docstring/paragraph": 8_000,
}

PASSAGE_MAX_WORDS = 90  # keeps passages inside a 128-token training window for both tokenizers


@dataclass(frozen=True)
class Synset:
    """One WordNet synset: part of speech, lemma names, definition and example sentences.

    ``key`` is ``pos + offset`` (how pointers name synsets), ``lexname`` the lexicographer file
    number (its topic: animal, food, ...), ``hypernyms``/``hyponyms`` the keys of its broader and
    narrower synsets.
    """

    pos: str
    lemmas: tuple[str, ...]
    definition: str
    examples: tuple[str, ...]
    key: str = ""
    lexname: int = -1
    hypernyms: tuple[str, ...] = ()
    hyponyms: tuple[str, ...] = ()


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
    at = 4 + 2 * n_words
    pointers = [fields[at + 1 + 4 * i: at + 5 + 4 * i] for i in range(int(fields[at]))]
    hypernyms = tuple(p[2] + p[1] for p in pointers if p[0] in ("@", "@i"))
    hyponyms = tuple(p[2] + p[1] for p in pointers if p[0] in ("~", "~i"))
    # The gloss is "definition; "example one"; "example two"".
    parts = [p.strip() for p in gloss.strip().split(";")]
    examples = tuple(p.strip('"').strip() for p in parts if p.startswith('"'))
    definition = "; ".join(p for p in parts if p and not p.startswith('"'))
    return Synset(pos, lemmas, definition, examples, key=pos + fields[0],
                  lexname=int(fields[1]), hypernyms=hypernyms, hyponyms=hyponyms)


def gloss_text(synset: Synset) -> str:
    """A synset's gloss as the shipped sample writes a document's text: the definition as a
    sentence, then its examples ("For example: ..."). The topic classifier trains on this form."""
    text = synset.definition[0].upper() + synset.definition[1:] + "."
    if synset.examples:
        text += " For example: " + "; ".join(f'"{example}"' for example in synset.examples) + "."
    return text


def read_wordnet(wordnet_dir: Path = WORDNET_DIR) -> list[Synset]:
    """All synsets of the four ``data.*`` files."""
    synsets = []
    for name in ("noun", "verb", "adj", "adv"):
        with open(wordnet_dir / f"data.{name}", encoding="utf-8", errors="replace") as f:
            synsets.extend(s for s in map(parse_wordnet_line, f) if s is not None)
    return synsets


def wordnet_texts(synsets: list[Synset], rng: random.Random) -> dict[str, list[str]]:
    """Candidate texts per WordNet sub-source (unsampled)."""
    by_key = {s.key: s for s in synsets}
    out: dict[str, list[str]] = {k: [] for k in
                                 ("query", "lemma", "gloss", "passage", "example", "article")}
    for s in synsets:
        lemma = rng.choice(s.lemmas)
        broader = [by_key[k] for k in s.hypernyms if k in by_key]
        hypernym = broader[0] if broader else None
        concept = Concept(lemma, s.pos, s.lexname, hypernym.lemmas[0] if hypernym else None)
        out["query"].append(web_query(concept, rng))
        out["lemma"].append(", ".join(s.lemmas[:4]))
        out["gloss"].append(s.definition)
        out["example"].extend(s.examples)
        if s.examples or len(s.definition.split()) > 12:
            body = f"{lemma}: {s.definition}." + "".join(f" {e}." for e in s.examples)
            out["passage"].append(_clip_words(body, PASSAGE_MAX_WORDS))
        if s.pos == "n" and (hypernym or s.hyponyms):
            narrower = [by_key[k].lemmas[0] for k in s.hyponyms if k in by_key]
            text = article(lemma, [x for x in s.lemmas if x != lemma], s.definition,
                           list(s.examples),
                           (hypernym.lemmas[0], hypernym.definition) if hypernym else None,
                           narrower)
            out["article"].append(_clip_words(text, PASSAGE_MAX_WORDS))
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


def read_dictzip(path: Path) -> str:
    """The text of a dictd ``.dict.dz`` file (dictzip is gzip-compatible; GCIDE is ~40 MB)."""
    return gzip.decompress(path.read_bytes()).decode("utf-8", errors="replace")


def parse_dictd(text: str) -> Iterator[tuple[str, list[str]]]:
    """(headword, body paragraphs) of a plain dictd database such as FOLDOC.

    A headword starts at column 0 (synonym headwords follow on the next lines), its body is
    indented; the ``00-database-*`` header entries are skipped.
    """
    headword, paras = "", []
    for para in re.split(r"\n\s*\n", text):
        lines = [line for line in para.split("\n") if line.strip()]
        if not lines:
            continue
        if not lines[0][0].isspace():
            if headword and paras:
                yield headword, paras
            headword, paras = lines[0].strip(), []
            lines = [line for line in lines if line[0].isspace()]
            if headword.startswith("00-database"):
                headword = ""
        if lines and headword:
            paras.append(" ".join(line.strip() for line in lines))
    if headword and paras:
        yield headword, paras


def _clean_foldoc(paragraph: str) -> str:
    paragraph = re.sub(r"^<[^>]*>\s*", "", paragraph)  # "<programming> ..." category tag
    return paragraph.replace("{", "").replace("}", "")


def foldoc_texts(path: Path = FOLDOC_PATH) -> list[str]:
    """Encyclopedia passages of FOLDOC: headword plus its prose paragraphs, clipped."""
    if not path.exists():
        log.warning("%s missing (apt install dict-foldoc): no FOLDOC passages", path)
        return []
    out = []
    for headword, paras in parse_dictd(read_dictzip(path)):
        body = [p for p in map(_clean_foldoc, paras)
                if "http" not in p and not re.fullmatch(r"\(\d{4}-\d\d-\d\d\)", p)]
        text = " ".join(body)
        if len(text.split()) >= 25:
            out.append(_clip_words(f"{headword}. {text}", PASSAGE_MAX_WORDS))
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
    for kind, items in gcide_texts(parse_gcide(read_dictzip(GCIDE_PATH))).items():
        candidates[f"gcide/{kind}"] = items
    candidates["foldoc/passage"] = foldoc_texts()
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
