"""The contract between `ferroloop.Loop`'s mixins (python/ferroloop/_loop.py): each mixin's
docstring names what it uses of the rest of the loop ("Needs from the loop: a, b (Owner),
..."), and these tests hold the code to it: every `self.x` a mixin uses is its own or
listed, every listed name is used and comes from the owner named, no two parts of the
loop define the same name, and Loop stays an asyncio.AbstractEventLoop with all of its
methods."""

import ast
import asyncio
import inspect
import re
import textwrap

import pytest

import ferroloop
from ferroloop._ferroloop import CoreLoop
from ferroloop._loop import Loop

MIXINS = [cls for cls in Loop.__mro__ if cls.__name__.endswith("Mixin")]


def needs(cls):
    """{name: owner} from the docstring's "Needs from the loop:" paragraph."""
    doc = inspect.getdoc(cls) or ""
    text = doc.partition("Needs from the loop:")[2]
    assert text, f"{cls.__name__}'s docstring has no 'Needs from the loop:'"
    out = {}
    for group, owner in re.findall(r"([^()]*)\((\w+)\)", " ".join(text.split())):
        for name in re.findall(r"[A-Za-z_]\w*", group):
            out[name] = owner
    return out


def uses_and_own(cls):
    """The `self.x` names the mixin's methods use, and those it defines or assigns."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    used, assigned = set(), set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "self":
            (assigned if isinstance(node.ctx, ast.Store) else used).add(node.attr)
    return used, assigned | set(vars(cls))


def provider(name):
    for cls in Loop.__mro__:
        if name in vars(cls):
            return cls.__name__
    return None


@pytest.mark.parametrize("cls", MIXINS, ids=lambda c: c.__name__)
def test_a_mixin_uses_only_what_it_names(cls):
    used, own = uses_and_own(cls)
    listed = needs(cls)
    unlisted = sorted(n for n in used - own - set(listed) if not n.startswith("__"))
    assert not unlisted, f"{cls.__name__} uses {unlisted} without naming them in its docstring"
    stale = sorted(set(listed) - used)
    assert not stale, f"{cls.__name__} names {stale} but does not use them"


@pytest.mark.parametrize("cls", MIXINS, ids=lambda c: c.__name__)
def test_what_a_mixin_needs_comes_from_the_owner_it_names(cls):
    for name, owner in needs(cls).items():
        assert provider(name) == owner, (
            f"{cls.__name__} needs {name} from {owner}; Loop has it from {provider(name)}"
        )


def test_no_two_parts_of_the_loop_define_one_name():
    parts = [*MIXINS, Loop, CoreLoop]
    seen = {}
    for cls in parts:
        for name in vars(cls):
            if name.startswith("__") or name == "_abc_impl":
                continue
            assert name not in seen, f"{name} is defined by {seen[name]} and {cls.__name__}"
            seen[name] = cls.__name__


def test_loop_is_an_abstract_event_loop_with_every_method():
    loop = ferroloop.new_event_loop()
    try:
        assert isinstance(loop, asyncio.AbstractEventLoop)
        missing = [
            name
            for name, value in vars(asyncio.AbstractEventLoop).items()
            if callable(value) and not name.startswith("_") and getattr(Loop, name) is value
        ]
        assert missing == [], f"Loop does not implement {missing}"
    finally:
        loop.close()
