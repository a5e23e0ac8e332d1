"""Per-node work, all at once."""

import pytest

from kindgpu import parallel


def test_concurrently_keeps_order_and_raises_first_error():
    assert parallel.concurrently(lambda x: x * 2, [3, 1, 2]) == [6, 2, 4]
    with pytest.raises(ValueError):
        parallel.concurrently(lambda x: (_ for _ in ()).throw(ValueError(x)), [1])
