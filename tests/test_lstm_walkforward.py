"""Walk-forward: one model per fold trained before its own test span, each bar answered by its fold's model."""

import functools
import re

import numpy as np
import pandas as pd
import pytest
import torch

from data_feeds import DataError, load_market
from strategies.lstm import ModelConfig, Predictor
from strategies.lstm.folds import make_folds
from strategies.lstm.walkforward import WalkForwardPredictor, train_walk_forward, walk_forward_folds

START = pd.Timestamp("2023-02-10", tz="UTC")
SPAN = 120                                   # bars predicted: folds of 48, 48 and 24
TINY = ModelConfig(window=8, hidden=8, train_bars=400, val_bars=120, epochs=1, batch_size=64, lr=0.01,
                   walk_forward_test_bars=48)
COST = 0.001


@functools.lru_cache(maxsize=1)
def market():
    m = load_market("binanceusdm", "BTC/USDT:USDT", "1h", "2023-01-01", "2023-02-28")
    end = START + pd.Timedelta(hours=SPAN)
    return m.candles[m.candles.index < end], m.funding


@functools.lru_cache(maxsize=2)
def models(cfg=TINY):
    candles, funding = market()
    return tuple(train_walk_forward(candles, funding, cfg, walk_forward_folds(candles.index, cfg, START), cost=COST))


def attached(mode="batched", candles=None, funding=None) -> WalkForwardPredictor:
    c, f = market()
    p = WalkForwardPredictor(list(models()), mode, chunk=16)
    p.attach(c if candles is None else candles, f if funding is None else funding, START)
    return p


def states_equal(a, b) -> bool:
    sa, sb = a.model.state()[0], b.model.state()[0]
    return all(torch.equal(sa[k], sb[k]) for k in sa)


def test_each_fold_is_trained_on_the_bars_just_before_its_own_test_span():
    pairs = models()
    assert [f.test_bars for f, _ in pairs] == [48, 48, 24]
    for fold, trained in pairs:
        spans = trained.meta["spans"]
        assert pd.Timestamp(spans["train_end"]) == fold.train_end == fold.test_span[0]
        assert pd.Timestamp(spans["validation"][0]) == fold.val_span[0]
        assert pd.Timestamp(spans["train"][0]) == fold.train_span[0]
        assert trained.config.train_bars == 400 and trained.config.val_bars == 120


def test_expanding_folds_keep_the_first_training_bar_and_grow():
    cfg = TINY.replace(walk_forward_expanding=True, epochs=1)
    folds = walk_forward_folds(market()[0].index, cfg, START)
    assert len({f.train_span[0] for f in folds}) == 1
    assert [f.train_bars for f in folds] == [400, 448, 496]


def test_every_bar_is_answered_by_the_model_of_the_fold_that_holds_it():
    candles, funding = market()
    wf = attached()
    assert len(wf) == SPAN and wf.index[0] == START
    assert wf.fold_boundaries == [f.train_end for f, _ in models()]
    frame = wf.probability_frame()
    for fold, trained in models():
        alone = Predictor(trained)
        alone.attach(candles[candles.index <= fold.test_span[1]], funding, fold.train_end)
        rows = frame.loc[fold.test_span[0]:fold.test_span[1]]
        np.testing.assert_allclose(rows.to_numpy(), alone.probability_frame().to_numpy(), rtol=0, atol=1e-6)
        offset = int(wf.index.searchsorted(fold.train_end))
        assert [wf.signal(offset + i) for i in range(len(alone))] == [alone.signal(i) for i in range(len(alone))]


def test_batched_and_online_agree_across_fold_boundaries():
    batched, online = attached("batched"), attached("online")
    for i in range(SPAN):
        np.testing.assert_allclose(online.probabilities(i), batched.probabilities(i), rtol=0, atol=1e-6)
        assert online.signal(i) == batched.signal(i)
    np.testing.assert_allclose(online.probability_frame().to_numpy(), batched.probability_frame().to_numpy(),
                               atol=1e-6)


@pytest.mark.parametrize("t", [0, 47, 48, 70, SPAN - 2])
def test_removing_candles_after_bar_t_does_not_change_predictions_up_to_t(t):
    candles, funding = market()
    full = attached()
    cut = candles[candles.index <= START + pd.Timedelta(hours=t)]
    short = attached(candles=cut, funding=funding[funding.index <= cut.index[-1] + pd.Timedelta(hours=1)])
    assert len(short) == t + 1
    np.testing.assert_allclose(short.probability_frame().to_numpy(),
                               full.probability_frame().to_numpy()[:t + 1], rtol=0, atol=1e-6)


def test_bars_of_a_later_fold_never_reach_an_earlier_folds_model():
    candles, funding = market()
    last = models()[-1][0]
    shocked = candles.copy()
    shocked.loc[shocked.index >= last.train_end, ["open", "high", "low", "close"]] *= 1.5
    other = train_walk_forward(shocked, funding, TINY, [f for f, _ in models()], cost=COST)
    same = [states_equal(a, b) for (_, a), (_, b) in zip(models(), other)]
    assert same == [True, True, True]         # the shock starts at the last fold's first test bar: nobody saw it
    shocked.loc[shocked.index >= last.val_span[0], "volume"] *= 7.0
    other = train_walk_forward(shocked, funding, TINY, [f for f, _ in models()], cost=COST)
    assert [states_equal(a, b) for (_, a), (_, b) in zip(models(), other)][:2] == [True, True]
    assert other[2][1].data_hash != models()[2][1].data_hash


def test_cached_folds_are_stored_under_their_fold_names_and_loaded_again(tmp_path):
    candles, funding = market()
    folds = walk_forward_folds(candles.index, TINY, START)[:2]
    first = train_walk_forward(candles, funding, TINY, folds, cost=COST, cache_dir=tmp_path)
    lines = []
    again = train_walk_forward(candles, funding, TINY, folds, cost=COST, cache_dir=tmp_path, progress=lines.append)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fold-20230210T0000Z", "fold-20230212T0000Z"]
    assert sum("using cached model" in line for line in lines) == 2
    assert lines[0].startswith("fold 1/2 fold-20230210T0000Z: train 2023-01-19 08:00")
    assert all(states_equal(a, b) for (_, a), (_, b) in zip(first, again))


def test_bars_outside_the_folds_and_folds_from_another_index_are_refused():
    candles, funding = market()
    wf = WalkForwardPredictor(list(models()))
    with pytest.raises(DataError, match="before the first fold's test span"):
        wf.attach(candles, funding, START - pd.Timedelta(hours=1))
    more = load_market("binanceusdm", "BTC/USDT:USDT", "1h", "2023-01-01", "2023-02-28").candles
    with pytest.raises(DataError, match="have no fold"):
        wf.attach(more, funding, START)
    folds = make_folds(candles.index, 400, 120, 48, start=START)
    gap = candles.drop(folds[0].val_span[0] + pd.Timedelta(hours=5))          # a bar missing inside validation
    with pytest.raises(DataError, match="fold-20230210T0000Z does not fit these candles"):
        train_walk_forward(gap, funding, TINY, folds, cost=COST)


def test_walk_forward_off_is_refused_by_the_fold_helper():
    with pytest.raises(ValueError, match="walk-forward is off"):
        walk_forward_folds(market()[0].index, TINY.replace(walk_forward_test_bars=0), START)


def test_train_command_prints_a_line_per_fold_and_epoch_then_one_table_row_per_fold(tmp_path):
    import argparse
    import io

    from backtests.training import add_train_arguments, train_command

    config = tmp_path / "tiny.toml"
    config.write_text("[model]\nwindow = 8\nhidden = 8\ntrain_bars = 400\nval_bars = 120\nepochs = 2\n"
                      "batch_size = 64\ntune_threshold = true\n")
    parser = argparse.ArgumentParser()
    add_train_arguments(parser)
    args = parser.parse_args(["--config", str(config), "--start", "2023-02-10", "--end", "2023-02-14",
                              "--test-bars", "48", "--device", "cpu", "--cache-dir", str(tmp_path / "models")])
    out = io.StringIO()
    assert train_command(args, out=out) == 0
    lines = out.getvalue().splitlines()
    assert "3 fold(s) of up to 48 bars, LSTM window 8, hidden 8, 400 train" in lines[0]
    assert sum(line.startswith("fold ") and "/3 fold-" in line for line in lines) == 3
    assert sum(line.startswith("epoch ") for line in lines) == 6
    header = lines.index(next(line for line in lines if line.startswith("fold  ")))
    assert "val acc / majority" in lines[header] and "test log-loss / prior" in lines[header]
    rows = lines[header + 1:header + 4]
    assert [r.split()[:2] for r in rows] == [["fold-20230210T0000Z", "48"], ["fold-20230212T0000Z", "48"],
                                             ["fold-20230214T0000Z", "24"]]
    for row in rows:       # model / baseline pairs for validation and test accuracy and log-loss
        assert len(re.findall(r"\d+\.\d% / \d+\.\d%", row)) == 2 and len(re.findall(r"\d\.\d{4} / \d\.\d{4}", row)) == 2
        # a threshold tuned on 120 validation bars of a tiny model: a number, or "flat" when it traded too little
        assert re.search(r" (0\.[3-7]\d|flat \(\d+ < 20 trades\)) ", row)
    assert re.match(r"\d of 3 fold\(s\) scored below always-the-majority-class", lines[header + 4])


def test_device_auto_picks_cuda_only_when_torch_sees_it_and_cuda_without_one_is_refused():
    from backtests.training import resolve_device

    assert resolve_device("auto", True) == "cuda" and resolve_device("auto", False) == "cpu"
    assert resolve_device("cpu", True) == "cpu"
    with pytest.raises(ValueError, match="torch sees no CUDA device"):
        resolve_device("cuda", False)


def test_train_command_names_the_model_kind_in_its_header(tmp_path):
    import argparse
    import io

    from backtests.training import add_train_arguments, train_command

    parser = argparse.ArgumentParser()
    add_train_arguments(parser)
    (tmp_path / "tiny.toml").write_text("[model]\nwindow = 8\ntrain_bars = 400\nval_bars = 120\n")
    args = parser.parse_args(["--config", str(tmp_path / "tiny.toml"), "--model-kind", "logreg", "--start",
                              "2023-02-10", "--end", "2023-02-11", "--device", "cpu", "--cache-dir", str(tmp_path)])
    out = io.StringIO()
    assert train_command(args, out=out) == 0
    header = out.getvalue().splitlines()[0]
    assert "LOGREG on the decision bar's 6 features" in header and "LSTM" not in header
