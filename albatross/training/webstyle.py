"""Web-style search queries and encyclopedia-like passages composed from WordNet.

MS MARCO-like traffic is short questions about things ("symptoms of measles", "how long do
parrots live", "where is lahore") and explanatory passages about them.  The distillation corpus has
no such text of its own, but WordNet knows what each noun is about (its lexicographer file: animal,
food, location, ...) and how it relates to others (hypernyms, hyponyms), which is enough to write
the *inputs* in that style.  The teacher supplies the targets, so a template only has to produce
plausible text, never a correct answer.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass

#: WordNet lexicographer file numbers (``lexnames`` in the WordNet distribution) used below.
NOUN_ACT, NOUN_ANIMAL, NOUN_ARTIFACT, NOUN_BODY = 4, 5, 6, 8
NOUN_FOOD, NOUN_GROUP, NOUN_LOCATION, NOUN_OBJECT, NOUN_PERSON = 13, 14, 15, 17, 18
NOUN_PHENOMENON, NOUN_PLANT, NOUN_POSSESSION, NOUN_PROCESS = 19, 20, 21, 22
NOUN_QUANTITY, NOUN_STATE, NOUN_SUBSTANCE, NOUN_TIME = 23, 26, 27, 28

# {x}: the lemma, {xs}: its plural, {a}: "a"/"an" + lemma, {h}: a hypernym lemma.
TOPIC_TEMPLATES: Mapping[int, tuple[str, ...]] = {
    NOUN_ANIMAL: ("what do {xs} eat", "how long do {xs} live", "where do {xs} live",
                  "{x} facts", "{x} habitat", "are {xs} dangerous", "how big is {a}",
                  "what kind of {h} is {a}"),
    NOUN_ARTIFACT: ("how does {a} work", "what is {a} used for", "how much does {a} cost",
                    "{x} price", "who invented the {x}", "how to use {a}", "parts of {a}",
                    "best {x} to buy"),
    NOUN_BODY: ("where is the {x} located", "what does the {x} do", "function of the {x}",
                "{x} pain causes", "what is the {x} made of", "{x} anatomy"),
    NOUN_FOOD: ("how many calories in {x}", "how to cook {x}", "is {x} good for you",
                "{x} nutrition facts", "what is {x} made of", "how long to bake {x}",
                "{x} recipe"),
    NOUN_LOCATION: ("where is {x}", "{x} population", "weather in {x}", "what country is {x} in",
                    "things to do in {x}", "what county is {x} in", "history of {x}"),
    NOUN_PERSON: ("what does {a} do", "how much does {a} make", "{x} salary",
                  "how to become {a}", "who was {x}", "{x} job description", "famous {xs}"),
    NOUN_PLANT: ("how to grow {x}", "when to plant {x}", "is {x} poisonous", "{x} care",
                 "where does {x} grow", "{x} flower"),
    NOUN_STATE: ("symptoms of {x}", "what causes {x}", "{x} treatment", "is {x} contagious",
                 "how long does {x} last", "signs of {x}"),
    NOUN_SUBSTANCE: ("what is {x} made of", "uses of {x}", "is {x} toxic", "where is {x} found",
                     "chemical formula of {x}", "{x} properties"),
    NOUN_TIME: ("when is {x}", "how long is {a}", "what happens during {x}", "{x} dates"),
    NOUN_ACT: ("how long does {x} take", "what happens during {x}", "steps of {x}",
               "cost of {x}", "benefits of {x}"),
    NOUN_PROCESS: ("what causes {x}", "how does {x} work", "stages of {x}",
                   "what is the process of {x}"),
    NOUN_POSSESSION: ("how much is {a}", "{x} cost", "how to pay {x}", "{x} tax", "average {x}"),
    NOUN_QUANTITY: ("how many {xs} in {a} {h}", "convert {xs}", "what is {a} equal to",
                    "{x} conversion"),
    NOUN_PHENOMENON: ("what causes {x}", "how does {x} happen", "effects of {x}", "{x} examples"),
    NOUN_GROUP: ("what is {a}", "members of the {x}", "how does {a} work", "types of {x}"),
    NOUN_OBJECT: ("where is {x}", "how was {x} formed", "{x} facts", "how big is {a}"),
}

GENERIC_NOUN = ("what is {a}", "{x} meaning", "define {x}", "{x} definition",
                "what does {x} mean", "examples of {x}", "types of {x}", "{x}")
VERB = ("how to {x}", "how long does it take to {x}", "how do you {x}", "what does {x} mean",
        "{x} in a sentence", "why do people {x}", "{x} synonym", "what does it mean to {x}")
ADJECTIVE = ("what does {x} mean", "{x} meaning", "{x} synonym", "define {x}", "opposite of {x}")


@dataclass(frozen=True)
class Concept:
    """What a template needs to know about one synset."""

    lemma: str
    pos: str
    lexname: int
    hypernym: str | None = None


def plural(noun: str) -> str:
    """English plural of the last word of ``noun`` (regular rules only; good enough for input)."""
    if noun.endswith(("s", "x", "z", "ch", "sh")):
        return noun + "es"
    if noun.endswith("y") and len(noun) > 1 and noun[-2] not in "aeiou":
        return noun[:-1] + "ies"
    return noun + "s"


def with_article(noun: str) -> str:
    """``noun`` preceded by "a" or "an"."""
    return ("an " if noun[:1].lower() in "aeiou" else "a ") + noun


def templates_for(concept: Concept) -> tuple[str, ...]:
    """The query templates that fit the concept's part of speech and topic."""
    if concept.pos == "v":
        return VERB
    if concept.pos != "n":
        return ADJECTIVE
    topical = TOPIC_TEMPLATES.get(concept.lexname, ())
    if concept.hypernym is None:
        topical = tuple(t for t in topical if "{h}" not in t)
    return topical or GENERIC_NOUN


def web_query(concept: Concept, rng: random.Random) -> str:
    """One search-like string about the concept: topical when WordNet knows its topic."""
    template = rng.choice(templates_for(concept))
    return template.format(x=concept.lemma, xs=plural(concept.lemma),
                           a=with_article(concept.lemma), h=concept.hypernym or "")


def article(lemma: str, synonyms: list[str], definition: str, examples: list[str],
            hypernym: tuple[str, str] | None, hyponyms: list[str]) -> str:
    """An encyclopedia-style paragraph about one noun.

    ``hypernym`` is (lemma, definition) of its broader term; ``hyponyms`` are narrower lemmas.
    """
    head = lemma[:1].upper() + lemma[1:]
    also = f" (also {', '.join(synonyms[:3])})" if synonyms else ""
    parts = [f"{head}{also}: {definition}."]
    if hypernym is not None:
        # A proper noun ("Danube") is an instance, a common noun a kind.
        subject = lemma if lemma[:1].isupper() else with_article(lemma)
        relation = with_article(hypernym[0]) if lemma[:1].isupper() else f"a kind of {hypernym[0]}"
        parts.append(f"{subject[:1].upper()}{subject[1:]} is {relation}, that is, {hypernym[1]}.")
    parts.extend(f"{e[:1].upper()}{e[1:]}." for e in examples[:2])
    if hyponyms:
        kinds = hyponyms[:4]
        listed = kinds[0] if len(kinds) == 1 else ", ".join(kinds[:-1]) + " and " + kinds[-1]
        parts.append(f"Types of {plural(lemma)} include {listed}.")
    return " ".join(parts)
