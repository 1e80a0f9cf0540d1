"""``ra.core.frozen.frozen``: the class ``@dataclass(frozen=True, slots=True)`` makes, with an
``__init__`` that sets the slots directly (kept as generated where dataclasses' own is needed)."""
from __future__ import annotations

import dataclasses
import inspect
import pickle
from dataclasses import dataclass, field
from typing import Any

import pytest

from ra import messages as rm
from ra.core import effects as ef
from ra.core import messages as cm
from ra.core.frozen import frozen


@frozen
class Pair:
    kind: str
    payload: Any
    priority: str = "normal"
    session: Any = None


@dataclass(frozen=True, slots=True)
class PlainPair:
    kind: str
    payload: Any
    priority: str = "normal"
    session: Any = None


def _fast(cls: type) -> bool:
    """The replaced ``__init__``: it calls the slots' setters, not ``object.__setattr__`` (which
    the generated one reaches as ``__dataclass_builtins_object__``)."""
    code = cls.__init__.__code__
    return "__dataclass_builtins_object__" not in code.co_names + code.co_freevars


def test_same_class_as_a_frozen_slotted_dataclass() -> None:
    assert _fast(Pair) and not _fast(PlainPair)
    a, b = Pair("usr", 1), Pair("usr", 1, "normal", None)
    assert a == b and hash(a) == hash(b) and a != Pair("usr", 2)
    assert repr(a) == "Pair(kind='usr', payload=1, priority='normal', session=None)"
    assert Pair.__match_args__ == PlainPair.__match_args__
    assert Pair.__slots__ == PlainPair.__slots__ and not hasattr(a, "__dict__")
    assert str(inspect.signature(Pair)) == str(inspect.signature(PlainPair))
    assert Pair(kind="k", payload=2, session=(1, 2, 3)).session == (1, 2, 3)
    with pytest.raises(dataclasses.FrozenInstanceError):
        a.kind = "x"  # type: ignore[misc]
    assert dataclasses.replace(a, payload=5) == Pair("usr", 5)
    assert pickle.loads(pickle.dumps(a)) == a


def test_wrong_arguments_raise_as_the_generated_init_does() -> None:
    for cls in (Pair, PlainPair):
        with pytest.raises(TypeError, match="missing 2 required positional arguments"):
            cls()  # type: ignore[call-arg]
        with pytest.raises(TypeError, match="unexpected keyword argument"):
            cls("a", 1, nope=1)  # type: ignore[call-arg]
        with pytest.raises(TypeError, match="takes from 3 to 5 positional arguments"):
            cls("a", 1, "p", None, 5)  # type: ignore[call-arg]


def test_post_init_and_factories_keep_the_generated_init() -> None:
    seen = []

    @frozen
    class Checked:
        x: int

        def __post_init__(self) -> None:
            seen.append(self.x)

    @frozen
    class WithList:
        items: list[int] = field(default_factory=list)

    assert Checked(3).x == 3 and seen == [3]
    assert WithList().items == [] and WithList().items is not WithList().items
    assert not _fast(Checked) and not _fast(WithList)


def test_the_messages_and_effects_use_it() -> None:
    """Every frozen dataclass of the message and effect modules is made by ``frozen``; the
    ones without ``__post_init__`` or factories have the cheap ``__init__``."""
    classes = [v for m in (rm, cm, ef) for v in vars(m).values()
               if isinstance(v, type) and dataclasses.is_dataclass(v) and v.__module__ == m.__name__]
    assert len(classes) > 60
    fast = [c for c in classes if _fast(c)]
    assert rm.CommandCall in fast and cm.AppendEntriesReply in fast and ef.Reply in fast
    for c in classes:
        assert c.__dataclass_params__.frozen and hasattr(c, "__slots__"), c  # type: ignore[attr-defined]
        if c not in fast:
            assert hasattr(c, "__post_init__") or any(
                f.default_factory is not dataclasses.MISSING for f in dataclasses.fields(c)), c
