"""Windows end at their decision bar, are views where possible, and batch identically to per-item access."""

import numpy as np
import pytest
import torch

from strategies.lstm.dataset import WindowDataset, make_loader, make_windows


def feature_matrix(t=10, f=2):
    return np.arange(t * f, dtype=np.float32).reshape(t, f)     # row r = [2r, 2r+1]


def test_windows_have_shape_n_window_f_and_end_at_their_bar():
    x = feature_matrix()
    w = make_windows(x, np.array([2, 9]), window=3)
    assert w.shape == (2, 3, 2)
    np.testing.assert_array_equal(w[0], x[0:3])
    np.testing.assert_array_equal(w[1], x[7:10])


def test_contiguous_ends_give_a_view_and_scattered_ends_a_copy():
    x = feature_matrix()
    assert np.shares_memory(make_windows(x, np.arange(3, 8), window=4), x)
    assert not np.shares_memory(make_windows(x, np.array([3, 7, 5]), window=4), x)


@pytest.mark.parametrize("ends", [[1], [10]])
def test_windows_that_leave_the_data_are_refused(ends):
    with pytest.raises(ValueError, match=r"window ends must lie in \[2, 9\]"):
        make_windows(feature_matrix(), np.array(ends), window=3)


def test_batched_fetch_equals_per_item_fetch():
    ds = WindowDataset(feature_matrix(20), np.arange(4, 20), np.arange(16) % 3, window=5)
    xb, yb = ds.__getitems__([3, 0, 7])
    for row, k in enumerate([3, 0, 7]):
        x, y = ds[k]
        assert torch.equal(xb[row], x) and yb[row] == y
    assert xb.dtype == torch.float32 and yb.dtype == torch.int64 and xb.shape == (3, 5, 2)


def test_loader_order_depends_only_on_the_generator_seed():
    ds = WindowDataset(feature_matrix(50), np.arange(4, 50), np.arange(46) % 3, window=5)
    order = lambda seed: torch.cat([y for _, y in make_loader(ds, 8, shuffle=True,  # noqa: E731
                                                             generator=torch.Generator().manual_seed(seed))])
    first, again, other = order(1), order(1), order(2)
    assert torch.equal(first, again) and not torch.equal(first, other)
    batches = list(make_loader(ds, 8, shuffle=False))
    assert [len(y) for _, y in batches] == [8, 8, 8, 8, 8, 6]
