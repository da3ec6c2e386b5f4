"""Surface names of the toy-SWE suite, one pool per split.

Train and eval draw package names, module names, the nouns that make function names
(`clamp_apples`), variable names and the words used as data (dictionary keys, units, text) from
disjoint pools, so an eval task shares no surface name with any train task and eval measures
generalisation rather than recall. What the splits do share is the scaffold: the verbs that say
what a function does (`clamp`, `count`), Python keywords and builtins, and the test file layout.

Growing the suite: add words to both splits' pools (keep every word in exactly one split and, in
`ROLES`, every variable name in exactly one role); `tests/toy/test_vocab.py` checks both rules.
"""

from __future__ import annotations

from dataclasses import dataclass

SPLITS = ("train", "eval")


@dataclass(frozen=True)
class Pool:
    """The names one split may use."""

    packages: tuple[str, ...]
    modules: tuple[str, ...]
    nouns: tuple[str, ...]
    """Plural nouns that end function names: `<verb>_<noun>`."""
    words: tuple[str, ...]
    """Data words: dictionary keys, text values, labels in examples."""
    units: tuple[str, ...]
    """Unit words used as default labels."""
    roles: dict[str, tuple[str, ...]]
    """Variable names by role: a template's `{seq}` becomes one of `roles["seq"]`."""

    def names(self) -> set[str]:
        """Every surface word of this pool."""
        out = {*self.packages, *self.modules, *self.nouns, *self.words, *self.units}
        for names in self.roles.values():
            out.update(names)
        return out


def _w(text: str) -> tuple[str, ...]:
    return tuple(text.split())


# Variable roles: (train names, eval names). A template names its variables by role.
ROLES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "x": (("value", "reading"), ("sample", "measure")),
    "lo": (("low", "floor"), ("minimum", "bottom")),
    "hi": (("high", "ceiling"), ("maximum", "top")),
    "seq": (("items", "numbers"), ("entries", "series")),
    "n": (("count", "how_many"), ("amount", "quantity")),
    "acc": (("total", "running"), ("accum", "tally")),
    "i": (("idx", "k"), ("j", "pos_i")),
    "limit": (("threshold", "at_least"), ("cutoff", "bar")),
    "v": (("item", "num"), ("elem", "entry")),
    "amount": (("price", "weight"), ("distance", "mass")),
    "unit": (("unit", "suffix"), ("label", "tag")),
    "a": (("numerator", "part"), ("dividend", "share")),
    "b": (("denominator", "whole"), ("divisor", "base")),
    "table": (("mapping", "stock"), ("registry", "catalog")),
    "key": (("name", "code"), ("ident", "moniker")),
    "fallback": (("default", "missing"), ("otherwise", "if_absent")),
    "size": (("size", "width"), ("span", "stride")),
    "text": (("text", "line"), ("message", "phrase")),
    "old": (("old", "before"), ("target", "needle")),
    "new": (("new", "after"), ("replacement", "substitute")),
    "start": (("start", "first"), ("begin", "origin")),
    "stop": (("stop", "end"), ("finish", "limit_at")),
    "groups": (("groups", "full"), ("batches", "complete")),
    "rest": (("rest", "leftover"), ("remainder", "spare")),
    "names": (("names", "labels"), ("titles", "captions")),
    "position": (("position", "place"), ("rank", "slot")),
    "digits": (("digits", "pad_to"), ("places", "zeros_to")),
}

POOLS: dict[str, Pool] = {
    "train": Pool(
        packages=_w(
            "orchard pantry granary vineyard dairy bakery grocer beehive cellar greenhouse "
            "creamery mill"
        ),
        modules=_w("crates ledger harvest prices shelves baskets sacks bins"),
        nouns=_w("apples pears plums crates loaves jars seeds barrels melons sacks hives cheeses"),
        words=_w("apple pear plum fig grape lemon cherry peach olive"),
        units=_w("kg lb crates"),
        roles={role: pair[0] for role, pair in ROLES.items()},
    ),
    "eval": Pool(
        packages=_w(
            "starmap orbitkit nebula lunar cosmos rocketry telescope galaxy quasar meteor "
            "zenith pulsar"
        ),
        modules=_w("probes orbits signals charts thrust beacons flights docks"),
        nouns=_w(
            "comets moons probes stars planets rockets craters satellites asteroids launches "
            "beacons orbits"
        ),
        words=_w("comet moon star mars venus nova orbit saturn pluto"),
        units=_w("km au parsec"),
        roles={role: pair[1] for role, pair in ROLES.items()},
    ),
}
