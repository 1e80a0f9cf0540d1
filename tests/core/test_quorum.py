import pytest

from ra.core import quorum


@pytest.mark.parametrize("idxs,expected", [
    ([], 0),
    ([5], 5),
    ([5, 3], 3),
    ([5, 3, 1], 3),
    ([1, 3, 5], 3),
    ([7, 7, 0], 7),
    ([9, 4, 4, 2], 4),
    ([9, 8, 1, 1], 1),
    ([10, 9, 8, 1, 1], 8),
    ([10, 1, 1, 1, 9], 1),
])
def test_majority_index(idxs, expected):
    assert quorum.majority_index(idxs) == expected


@pytest.mark.parametrize("n,need", [(1, 1), (2, 2), (3, 2), (4, 3), (5, 3), (7, 4)])
def test_majority(n, need):
    assert quorum.majority(n) == need


def test_has_majority():
    assert quorum.has_majority({1, 2}, [1, 2, 3])
    assert not quorum.has_majority({1}, [1, 2, 3])
    assert not quorum.has_majority({1, 2}, [1, 2, 3, 4])
