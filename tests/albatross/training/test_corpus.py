"""Corpus parsers read the real WordNet and GCIDE formats (tiny inline samples)."""

import random

from albatross.training.corpus import (
    Text,
    is_prose,
    parse_dictd,
    parse_gcide,
    parse_wordnet_line,
    sample_corpus,
    select,
    wordnet_texts,
)
from albatross.training.webstyle import NOUN_ANIMAL, Concept, article, plural, templates_for, web_query

WORDNET_LINE = (
    '00217593 04 n 02 kill 1 laying_waste 0 002 @ 00217014 n 0000 + 00355365 v 0101 | the '
    'destruction of an enemy plane or ship or tank or missile; "the pilot reported two kills '
    'during the mission"  \n'
)

GCIDE_TEXT = """Arrive \\Ar*rive"\\, v. i. [imp. & p. p. {Arrived}; p. pr. & vb.
   n. {Arriving}.] [OE. ariven, F. arriver.]
   1. To come to the shore or bank. In present usage: To come
      in progress by water, or by traveling on land; to reach by
      water or by land; -- followed by at.
      [1913 Webster]

            When we were arrived upon the domain of the old town. --Milton.
      [1913 Webster]

Arriver \\Ar*riv"er\\, n.
   One who arrives at a place.
   [1913 Webster]
"""


def test_wordnet_line_gives_lemmas_definition_and_examples() -> None:
    synset = parse_wordnet_line(WORDNET_LINE)
    assert synset is not None
    assert synset.pos == "n"
    assert synset.lemmas == ("kill", "laying waste")
    assert synset.definition == "the destruction of an enemy plane or ship or tank or missile"
    assert synset.examples == ("the pilot reported two kills during the mission",)
    assert synset.key == "n00217593"
    assert synset.lexname == 4
    assert synset.hypernyms == ("n00217014",)
    assert synset.hyponyms == ()


PARROT_LINES = [
    "01816887 05 n 01 parrot 0 002 @ 01503061 n 0000 ~ 01817953 n 0000 | usually brightly "
    "colored zygodactyl tropical birds with short hooked beaks  \n",
    "01503061 05 n 01 bird 0 001 ~ 01816887 n 0000 | warm-blooded egg-laying vertebrates  \n",
    "01817953 05 n 01 popinjay 0 001 @ 01816887 n 0000 | an archaic term for a parrot  \n",
]


def test_wordnet_topic_gives_web_style_queries_and_articles_name_related_terms() -> None:
    synsets = [parse_wordnet_line(line) for line in PARROT_LINES]
    texts = wordnet_texts(synsets, random.Random(0))
    parrot_article = next(t for t in texts["article"] if t.startswith("Parrot"))
    assert "A parrot is a kind of bird, that is, warm-blooded egg-laying vertebrates." in parrot_article
    assert "Types of parrots include popinjay." in parrot_article
    animal_queries = {q.format(x="parrot", xs="parrots", a="a parrot", h="bird")
                      for q in templates_for(Concept("parrot", "n", NOUN_ANIMAL, "bird"))}
    assert texts["query"][0] in animal_queries
    assert "what do parrots eat" in animal_queries


def test_queries_without_a_broader_term_never_leave_a_hole() -> None:
    concept = Concept("quart", "n", 23, None)
    queries = {web_query(concept, random.Random(seed)) for seed in range(50)}
    assert queries and not any("  " in q or q.endswith(" ") for q in queries)


def test_articles_treat_proper_nouns_as_instances() -> None:
    text = article("Danube", ["Danube River"], "the second longest European river", [],
                   ("river", "a large natural stream of water"), [])
    assert "Danube is a river, that is, a large natural stream of water." in text
    assert plural("city") == "cities" and plural("box") == "boxes" and plural("day") == "days"


FOLDOC_TEXT = """00-databasealphabet
     abcdefghijklmnopqrstuvwxyz

abstract data type
ADT

   <programming> (ADT) A kind of {data abstraction} where a
   type's internal form is hidden.

   (2003-07-03)

abort

   To stop a program.
"""


def test_dictd_entries_keep_headword_and_body_paragraphs() -> None:
    entries = list(parse_dictd(FOLDOC_TEXT))
    assert [h for h, _ in entries] == ["abstract data type", "abort"]
    assert entries[0][1][0].startswith("<programming> (ADT) A kind of {data abstraction}")
    assert entries[1][1] == ["To stop a program."]


def test_wordnet_licence_header_is_skipped() -> None:
    assert parse_wordnet_line("  1 This software and database is being provided\n") is None


def test_gcide_entries_split_definitions_from_quotations_without_markup() -> None:
    entries = list(parse_gcide(GCIDE_TEXT))
    assert [e.headword for e in entries] == ["Arrive", "Arriver"]
    arrive = entries[0]
    assert arrive.definitions[0].startswith("To come to the shore or bank.")
    assert not any(ch in " ".join(arrive.definitions) for ch in "[]{}\\")
    assert arrive.quotations == ("When we were arrived upon the domain of the old town.",)
    assert entries[1].definitions == ("One who arrives at a place.",)


def test_prose_filter_keeps_sentences_and_drops_code() -> None:
    assert is_prose("The index is rebuilt from the database whenever the snapshot is older.")
    assert not is_prose("x = foo(bar[1], {'a': 2}) if y else baz(z) or qux(w)")
    assert not is_prose("Short line.")


def test_sampling_is_seeded_deduplicated_and_selectable() -> None:
    pools = {"a/x": ["One", "two", "Two", "three"], "b/y": ["one", "four"]}
    first = sample_corpus(pools, {"a/x": 3, "b/y": 2}, seed=1)
    assert first == sample_corpus(pools, {"a/x": 3, "b/y": 2}, seed=1)
    keys = [t.text.lower() for t in first]
    assert len(keys) == len(set(keys))
    picked = select([Text("p", "a/x"), Text("q", "b/y"), Text("r", "a/x")], {"a/x": 1, "b/y": 5})
    assert picked == [Text("p", "a/x"), Text("q", "b/y")]
