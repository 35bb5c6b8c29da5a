"""Corpus parsers read the real WordNet and GCIDE formats (tiny inline samples)."""

from indexer.training.corpus import Text, is_prose, parse_gcide, parse_wordnet_line, sample_corpus, select

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
