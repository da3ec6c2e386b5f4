"""Every bug of every template is injectable and visible on some example call."""

import random

import pytest

from swerl.swe.toy.families import FAMILIES, TEMPLATES, templates_for
from swerl.swe.toy.generate import Function, _inject, _make_function, _split_examples
from swerl.swe.toy.vocab import POOLS


@pytest.mark.parametrize("family", FAMILIES)
def test_every_family_has_three_or_more_templates(family):
    assert len(templates_for(family)) >= 3


def test_unknown_family_is_refused():
    with pytest.raises(ValueError, match="unknown bug family 'typo'"):
        templates_for("typo")


@pytest.mark.parametrize("template", TEMPLATES, ids=lambda t: t.verb)
@pytest.mark.parametrize("split", ["train", "eval"])
def test_each_bug_changes_some_calls_and_keeps_the_code_valid(template, split):
    for family, bugs in template.bugs.items():
        for bug in bugs:
            for seed in range(5):
                fn = _make_function(template, "mod", POOLS[split], random.Random(seed))
                _inject(fn, bug)
                compile(fn.buggy, "<buggy>", "exec")
                assert fn.buggy != fn.source
                same, differ = _split_examples(fn)
                assert differ, (template.verb, family, bug, seed)


def test_function_outcome_records_errors():
    fn = Function("f", "m", "def f(a):\n    return 1 / a\n")
    assert fn.outcome((2,), with_bug=False).value == 0.5
    assert fn.outcome((0,), with_bug=False).error == "ZeroDivisionError"
