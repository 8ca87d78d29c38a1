"""Wide tables (hundreds of columns) train and sample in seconds: the autoregressive model factorizes
its first layer there (issue 13, item 9: 200 x 500 took 150-270 s), and narrow tables keep the full layer."""
import numpy as np
import pandas as pd
import pytest
import torch

from synthloop.synthesizers import AutoregressiveSynthesizer, load_synthesizer
from synthloop.synthesizers.autoregressive import _Net, _input_rank


def _wide(rows: int = 80, cols: int = 180) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    base = rng.normal(size=rows)
    data = {}
    for j in range(cols):
        if j % 3 == 0:
            data[f"c{j}"] = np.where(base + rng.normal(0, 0.5, rows) > 0, "hi", "lo")
        else:
            data[f"n{j}"] = np.round(base * (j % 7 + 1) + rng.normal(0, 0.3, rows), 2)
    return pd.DataFrame(data)


def test_wide_tables_get_the_factorized_layer_and_narrow_ones_the_full_layer():
    assert _input_rank("auto", 21, 8, 128) == 0  # Adult
    assert _input_rank("auto", 833, 8, 128) > 0  # 200 x 500 mixed
    assert _input_rank(0, 833, 8, 128) == 0 and _input_rank(16, 21, 8, 128) == 16


@pytest.mark.parametrize("rank", [0, 8])
def test_one_head_at_a_time_gives_the_same_logits_as_the_whole_net(rank):
    torch.manual_seed(0)
    vocab = [5, 3, 7, 4, 6]
    net = _Net(vocab, emb_dim=4, hidden=16, n_layers=2, dropout=0.0, rank=rank).eval()
    b, c = 6, len(vocab)
    tokens = torch.stack([torch.randint(0, v, (b,)) for v in vocab], dim=1)
    order = [2, 0, 4, 1, 3]
    slot_rank = torch.empty(b, c, dtype=torch.long)
    slot_rank[:, order] = torch.arange(c)
    with torch.no_grad():
        full = net(tokens, slot_rank)  # (C, B, Vmax)
        emb = torch.zeros(b, c, net.e)
        acc = torch.zeros(b, rank) if rank else None
        done: list[int] = []
        for j in order:
            for a in ([None, acc] if rank else [None]):
                assert torch.allclose(net.head(j, emb, done, a), full[j], atol=1e-5)
            emb[:, j] = net.embed_slot(j, tokens[:, j])
            if rank:
                acc += net.project_slot(j, emb[:, j])
            done.append(j)


def test_a_wide_table_fits_samples_and_round_trips(tmp_path):
    df = _wide()
    model = AutoregressiveSynthesizer(epochs=3, random_state=0, n_threads=1).fit(df)
    assert model.input_rank_ > 0 and len(model.slots_) > 171
    n_weights = sum(p.numel() for p in model.net_.parameters())
    assert n_weights < 20_000_000  # the full layer would hold slots^2 x 9 x 128 (> 40 M here)
    out = model.sample(50, seed=1)
    assert out.shape == (50, df.shape[1]) and list(out.columns) == list(df.columns)
    path = model.save(tmp_path / "wide.npz")
    again = load_synthesizer(path)
    pd.testing.assert_frame_equal(again.sample(50, seed=1), out)
    cond = model.sample(20, seed=2, conditions={"c0": "hi"})
    assert (cond["c0"] == "hi").all()
