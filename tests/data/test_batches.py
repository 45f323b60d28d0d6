import numpy as np
import pytest

from rnnchat.data.batches import StreamBatches, bucket_batches, pad


def test_stream_batches_cover_the_stream_with_shifted_targets():
    tokens = np.arange(103)
    b = StreamBatches(tokens, batch_size=4, bptt=7)
    assert len(b) == 4  # 25 columns per row -> 7+7+7+4
    xs = np.concatenate([b[i][0] for i in range(len(b))], axis=1)
    ys = np.concatenate([b[i][1] for i in range(len(b))], axis=1)
    np.testing.assert_array_equal(xs.ravel(), tokens[:100])
    np.testing.assert_array_equal(ys, xs + 1)
    # row r of batch i+1 continues row r of batch i
    assert b[1][0][2, 0] == b[0][0][2, -1] + 1
    with pytest.raises(IndexError):
        b[4]


def test_stream_batches_reject_tiny_stream():
    with pytest.raises(ValueError, match="too few"):
        StreamBatches(np.arange(3), batch_size=4, bptt=2)


def test_pad_and_mask():
    ids, mask = pad([[5, 6, 7], [8], []], pad_id=0)
    np.testing.assert_array_equal(ids, [[5, 6, 7], [8, 0, 0], [0, 0, 0]])
    np.testing.assert_array_equal(mask, [[1, 1, 1], [1, 0, 0], [0, 0, 0]])


def test_bucket_batches_partition_and_group_similar_lengths():
    rng = np.random.default_rng(0)
    lengths = rng.integers(1, 60, 1000)
    batches = bucket_batches(lengths, 32, rng=np.random.default_rng(1), bucket_factor=10)
    allidx = np.sort(np.concatenate(batches))
    np.testing.assert_array_equal(allidx, np.arange(1000))
    spread = np.mean([lengths[b].max() - lengths[b].min() for b in batches])
    assert spread < 10  # random batches would spread ~55
    again = bucket_batches(lengths, 32, rng=np.random.default_rng(1), bucket_factor=10)
    assert all((a == b).all() for a, b in zip(batches, again))


def test_variable_windows_tile_every_row_and_change_each_epoch():
    tokens = np.arange(20_001, dtype=np.int32)
    fixed = StreamBatches(tokens, 4, 32)
    vary = StreamBatches(tokens, 4, 32, vary=True, seed=3)
    assert len(vary) == len(fixed)

    def cuts(b):
        return [b[i][0].shape[1] for i in range(len(b))]

    first = cuts(vary)
    assert len(set(first)) > 10 and min(first) >= 4 and sum(first) == vary.x.shape[1]
    np.testing.assert_array_equal(np.concatenate([vary[i][0] for i in range(len(vary))], axis=1), vary.x)
    np.testing.assert_array_equal(np.concatenate([vary[i][1] for i in range(len(vary))], axis=1), vary.y)
    vary.set_epoch(1)
    assert cuts(vary) != first and sum(cuts(vary)) == vary.x.shape[1]
    vary.set_epoch(0)
    assert cuts(vary) == first  # from (seed, epoch) alone: a resumed run cuts the same windows
    assert cuts(fixed) == [32] * (len(fixed) - 1) + [fixed.x.shape[1] - 32 * (len(fixed) - 1)]
    with pytest.raises(ValueError, match="at least 10"):
        StreamBatches(tokens, 4, 8, vary=True)
