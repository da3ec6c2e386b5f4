"""Bug families and the function templates they are injected into.

A `Template` is one small, correct Python function with `$fn` (its name) and `$<role>`
placeholders (its variables, named per split by `vocab.ROLES`), the bugs it can carry (per family:
the correct text and the buggy text that replaces it, each occurring exactly once), and a recipe
for example calls. The generator never writes expected values by hand: it runs the correct and the
buggy function on the examples, calls that agree become the repository's existing tests, calls
that differ become the issue's example and the hidden tests of `test_patch`.

Growing the suite: add a `Template` (keep it under ~10 lines, one bug site per family, examples
that include both agreeing and differing calls); `tests/toy/test_families.py` checks every bug.
"""

from __future__ import annotations

import random
import textwrap
from collections.abc import Callable
from dataclasses import dataclass, field
from string import Template as _Subst

FAMILIES = (
    "wrong_operator",
    "off_by_one",
    "wrong_constant",
    "missing_branch",
    "swapped_arguments",
    "wrong_exception",
    "formatting",
)

Examples = Callable[[random.Random, list[str]], list[tuple]]
"""(rng, data words of the split) -> argument tuples to call the function with."""


@dataclass(frozen=True)
class Template:
    verb: str
    """First part of the function name: `<verb>_<noun>`; shared by the splits."""
    source: str
    """The correct function, with `$fn`, `$<role>` and (optionally) `$unit_word` placeholders."""
    bugs: dict[str, list[tuple[str, str]]]
    """family -> [(correct text, buggy text)], both in placeholder form."""
    examples: Examples
    roles: tuple[str, ...] = field(default=())
    """Filled in from `source` at import time: the roles its placeholders name."""


def _t(verb: str, source: str, bugs: dict[str, list[tuple[str, str]]], examples: Examples):
    source = textwrap.dedent(source).strip("\n") + "\n"
    names = {m.group("named") for m in _Subst.pattern.finditer(source) if m.group("named")}
    roles = tuple(sorted(names - {"fn", "unit_word"}))
    return Template(verb, source, bugs, examples, roles)


def _nums(rng: random.Random, n: int, lo: int = 1, hi: int = 20) -> list[int]:
    return [rng.randint(lo, hi) for _ in range(n)]


def _clamp_examples(rng: random.Random, words: list[str]) -> list[tuple]:
    lo = rng.randint(0, 5)
    hi = lo + rng.randint(4, 9)
    return [(lo + 2, lo, hi), (lo, lo, hi), (lo - 3, lo, hi), (hi + 4, lo, hi), (hi, lo, hi)]


TEMPLATES: tuple[Template, ...] = (
    _t(
        "clamp",
        '''
        def $fn($x, $lo, $hi):
            """Limit $x to the range from $lo to $hi (both included)."""
            if $x < $lo:
                return $lo
            if $x > $hi:
                return $hi
            return $x
        ''',
        {
            "wrong_operator": [("if $x < $lo:", "if $x > $lo:")],
            "missing_branch": [("    if $x > $hi:\n        return $hi\n", "")],
        },
        _clamp_examples,
    ),
    _t(
        "bound",
        '''
        def $fn($x, $lo, $hi):
            """Keep $x between $lo and $hi."""
            return max($lo, min($x, $hi))
        ''',
        {"swapped_arguments": [("max($lo, min($x, $hi))", "max($hi, min($x, $lo))")]},
        _clamp_examples,
    ),
    _t(
        "total_first",
        '''
        def $fn($seq, $n):
            """Add up the first $n numbers of $seq."""
            $acc = 0
            for $i in range($n):
                $acc += $seq[$i]
            return $acc
        ''',
        {
            "off_by_one": [("range($n)", "range($n - 1)")],
            "wrong_operator": [("$acc += $seq[$i]", "$acc -= $seq[$i]")],
        },
        lambda r, w: [(_nums(r, 5), 3), (_nums(r, 4), 0), (_nums(r, 6), 5), (_nums(r, 3), 1)],
    ),
    _t(
        "count_at_least",
        '''
        def $fn($seq, $limit=10):
            """Count the numbers in $seq that are at least $limit (10 unless given)."""
            return len([$v for $v in $seq if $v >= $limit])
        ''',
        {
            "wrong_constant": [("$limit=10", "$limit=100"), ("$limit=10", "$limit=1")],
            "wrong_operator": [("if $v >= $limit", "if $v > $limit")],
        },
        lambda r, w: [
            ([3, 10, r.randint(11, 40), r.randint(41, 99)],),
            ([r.randint(1, 9), 2, 15], 5),
            ([10, 4, 12, 10],),
            ([], 3),
        ],
    ),
    _t(
        "format_amount",
        '''
        def $fn($amount, $unit="$unit_word"):
            """Show $amount with exactly two decimals, then a space and $unit."""
            return f"{$amount:.2f} {$unit}"
        ''',
        {
            "formatting": [
                (":.2f}", ":.1f}"),
                ('f"{$amount:.2f} {$unit}"', 'f"{$amount:.2f}{$unit}"'),
            ]
        },
        lambda r, w: [
            (r.randint(1, 99) + r.choice([0.25, 0.5, 0.75, 0.125]),),
            (r.randint(1, 9), w[0]),
        ],
    ),
    _t(
        "ratio",
        '''
        def $fn($a, $b):
            """Divide $a by $b; a zero $b is a caller error and raises ValueError."""
            if $b == 0:
                raise ValueError("$b must not be zero")
            return $a / $b
        ''',
        {
            "wrong_exception": [("raise ValueError(", "raise ZeroDivisionError(")],
            "missing_branch": [
                ('    if $b == 0:\n        raise ValueError("$b must not be zero")\n', "")
            ],
        },
        lambda r, w: [(r.randint(1, 9) * 4, 4), (r.randint(1, 9), 0), (0, r.randint(1, 9))],
    ),
    _t(
        "lookup",
        '''
        def $fn($table, $key, $fallback=None):
            """Return what $table holds under $key, or $fallback when $key is absent."""
            if $key not in $table:
                return $fallback
            return $table[$key]
        ''',
        {
            "missing_branch": [("    if $key not in $table:\n        return $fallback\n", "")],
            "wrong_operator": [("if $key not in $table:", "if $key in $table:")],
        },
        lambda r, w: [
            ({w[0]: r.randint(1, 9), w[1]: r.randint(1, 9)}, w[0]),
            ({w[0]: 1, w[1]: 2}, w[2]),
            ({w[1]: 5}, w[3], 0),
        ],
    ),
    _t(
        "chunk",
        '''
        def $fn($seq, $size):
            """Cut $seq into pieces of $size items; the last piece may be shorter."""
            if $size < 1:
                raise ValueError("$size must be positive")
            return [$seq[$i:$i + $size] for $i in range(0, len($seq), $size)]
        ''',
        {
            "off_by_one": [("$i + $size]", "$i + $size - 1]")],
            "wrong_exception": [("raise ValueError(", "raise TypeError(")],
        },
        lambda r, w: [(_nums(r, 5), 2), (_nums(r, 3), 1), ([], 3), (_nums(r, 3), 0)],
    ),
    _t(
        "last",
        '''
        def $fn($seq, $n=3):
            """Return the last $n items of $seq (3 unless given), most recent first."""
            return list(reversed($seq[-$n:]))
        ''',
        {
            "wrong_constant": [("$n=3", "$n=2"), ("$n=3", "$n=4")],
            "off_by_one": [("$seq[-$n:]", "$seq[-$n + 1:]")],
        },
        lambda r, w: [(_nums(r, 6),), (_nums(r, 5), 2), (_nums(r, 2), 5), ([r.randint(1, 9)],)],
    ),
    _t(
        "pad",
        '''
        def $fn($v, $digits=4):
            """Write the number $v padded with leading zeros to $digits digits (4 unless given)."""
            return str($v).zfill($digits)
        ''',
        {
            "formatting": [(".zfill($digits)", ".rjust($digits)")],
            "wrong_constant": [("$digits=4", "$digits=3"), ("$digits=4", "$digits=5")],
        },
        lambda r, w: [(r.randint(1, 9),), (r.randint(10, 99), 3), (12345,), (r.randint(1, 9), 1)],
    ),
    _t(
        "percent",
        '''
        def $fn($a, $b):
            """Return $a as a percentage of $b, rounded to one decimal place."""
            return round(100 * $a / $b, 1)
        ''',
        {"wrong_constant": [("100 *", "10 *"), ("$b, 1)", "$b, 0)")]},
        lambda r, w: [(r.randint(1, 7), 8), (0, r.randint(1, 9)), (r.randint(1, 2), 3)],
    ),
    _t(
        "replace",
        '''
        def $fn($text, $old, $new):
            """Return $text with every $old replaced by $new."""
            return $text.replace($old, $new)
        ''',
        {"swapped_arguments": [("$text.replace($old, $new)", "$text.replace($new, $old)")]},
        lambda r, w: [
            (f"{w[0]} and {w[1]}", w[0], w[2]),
            (f"{w[1]} {w[1]}", w[3], w[4]),
            (f"one {w[2]}", w[2], w[3]),
        ],
    ),
    _t(
        "between",
        '''
        def $fn($seq, $start, $stop):
            """Return the items of $seq from index $start up to, not including, index $stop."""
            return [$seq[$i] for $i in range($start, $stop)]
        ''',
        {
            "swapped_arguments": [("range($start, $stop)", "range($stop, $start)")],
            "off_by_one": [("range($start, $stop)", "range($start, $stop + 1)")],
        },
        lambda r, w: [(_nums(r, 6), 1, 4), (_nums(r, 4), 2, 2), (_nums(r, 5), 0, 5)],
    ),
    _t(
        "split",
        '''
        def $fn($n, $size):
            """Split $n things into full groups of $size; return (groups, leftover)."""
            $groups, $rest = divmod($n, $size)
            return $groups, $rest
        ''',
        {"swapped_arguments": [("divmod($n, $size)", "divmod($size, $n)")]},
        lambda r, w: [(r.randint(11, 30), 5), (4, 4), (3, r.randint(4, 9))],
    ),
    _t(
        "largest",
        '''
        def $fn($seq):
            """Return the biggest number in $seq, or 0 when $seq is empty."""
            if not $seq:
                return 0
            return max($seq)
        ''',
        {
            "missing_branch": [("    if not $seq:\n        return 0\n", "")],
            "wrong_constant": [("        return 0\n", "        return -1\n")],
        },
        lambda r, w: [(_nums(r, 4),), ([],), ([-r.randint(2, 9), -1],)],
    ),
    _t(
        "pick",
        '''
        def $fn($seq, $position):
            """Return the item at 1-based $position in $seq; IndexError when there is none."""
            if $position < 1 or $position > len($seq):
                raise IndexError("$position out of range")
            return $seq[$position - 1]
        ''',
        {
            "off_by_one": [("$seq[$position - 1]", "$seq[$position]")],
            "wrong_exception": [("raise IndexError(", "raise ValueError(")],
            "wrong_operator": [("$position > len($seq)", "$position >= len($seq)")],
        },
        lambda r, w: [(_nums(r, 4), 2), (_nums(r, 3), 3), (_nums(r, 3), 0), (_nums(r, 2), 5)],
    ),
    _t(
        "join",
        '''
        def $fn($names):
            """Join $names into one line, separated by a comma and a space."""
            return ", ".join($names)
        ''',
        {"formatting": [('", ".join', '",".join'), ('", ".join', '" ".join')]},
        lambda r, w: [([w[0], w[1], w[2]],), ([w[3]],), ([],)],
    ),
    _t(
        "describe",
        '''
        def $fn($key, $n):
            """Return the line '$key: $n' with both values filled in."""
            return f"{$key}: {$n}"
        ''',
        {
            "formatting": [
                ('f"{$key}: {$n}"', 'f"{$key}:{$n}"'),
                ('f"{$key}: {$n}"', 'f"{$key} {$n}"'),
            ]
        },
        lambda r, w: [(w[0], r.randint(1, 9)), (w[1], r.randint(10, 99))],
    ),
)

WRAPPER_VERBS = ("handle", "compute", "report", "run")
"""Verbs of the public functions that delegate to a helper in another module (difficulty 3)."""


def templates_for(family: str) -> list[Template]:
    """Templates that can carry a bug of `family`."""
    if family not in FAMILIES:
        raise ValueError(f"unknown bug family {family!r}; known: {', '.join(FAMILIES)}")
    return [t for t in TEMPLATES if family in t.bugs]
