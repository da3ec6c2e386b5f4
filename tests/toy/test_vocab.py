"""The name pools: train and eval share no surface name, and every role has its own names."""

import builtins
import keyword

from swerl.swe.toy.families import TEMPLATES, WRAPPER_VERBS
from swerl.swe.toy.vocab import POOLS, ROLES


def test_splits_share_no_name():
    assert POOLS["train"].names().isdisjoint(POOLS["eval"].names())


def test_each_variable_name_has_one_role_and_is_no_builtin():
    for split, pool in POOLS.items():
        names = [n for role_names in pool.roles.values() for n in role_names]
        assert len(names) == len(set(names)), split
        reserved = set(keyword.kwlist) | set(dir(builtins))
        assert not reserved & set(names), split
    assert set(ROLES) >= {role for t in TEMPLATES for role in t.roles}


def test_scaffold_verbs_are_not_pool_words():
    verbs = {t.verb for t in TEMPLATES} | set(WRAPPER_VERBS)
    assert len(verbs) == len(TEMPLATES) + len(WRAPPER_VERBS)
    for pool in POOLS.values():
        assert verbs.isdisjoint(pool.names())
