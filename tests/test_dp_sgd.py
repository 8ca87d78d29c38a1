"""DP-SGD helper over Opacus: calibrated noise, the accountant's figure, the guarantee in words."""
from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("opacus")

from synthloop.errors import DataError  # noqa: E402
from synthloop.evaluate.guarantee import guarantee_text  # noqa: E402
from synthloop.synthesizers.dp_sgd import make_private, unwrap  # noqa: E402


def _setup(norm: bool = False):
    torch.manual_seed(0)
    x = torch.randn(512, 6)
    y = (x[:, 0] > 0).float()
    layers = [torch.nn.Linear(6, 8)] + ([torch.nn.BatchNorm1d(8)] if norm else []) + [torch.nn.ReLU(), torch.nn.Linear(8, 1)]
    model = torch.nn.Sequential(*layers)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=64)
    return model, opt, loader


def _train(dp, epochs):
    for _ in range(epochs):
        for xb, yb in dp.data_loader:
            dp.optimizer.zero_grad()
            loss = torch.nn.functional.binary_cross_entropy_with_logits(dp.module(xb).squeeze(-1), yb)
            loss.backward()
            dp.optimizer.step()


def test_training_spends_no_more_than_the_target_and_reports_it():
    torch.set_num_threads(1)
    model, opt, loader = _setup(norm=True)  # BatchNorm is swapped for a per-sample-safe layer
    dp = make_private(model, opt, loader, epsilon=2.0, delta=1e-5, epochs=2, max_grad_norm=1.0)
    assert dp.noise_multiplier > 0
    _train(dp, 2)
    spent = dp.spent()
    assert 0.5 * 2.0 < spent <= 2.0 * 1.01
    g = dp.guarantee(model_name="test net")
    assert g["epsilon"] == pytest.approx(spent) and g["delta"] == 1e-5
    assert g["statement"].endswith("-DP for the rows of the source table")

    class Model:
        def privacy_guarantee(self):
            return g

    assert guarantee_text(Model()).startswith(f"({round(spent, 4)}, 1e-05)-DP")
    assert "weight" in next(iter(unwrap(dp.module).state_dict()))


def test_smaller_epsilon_means_more_noise():
    m1, o1, l1 = _setup()
    m2, o2, l2 = _setup()
    loose = make_private(m1, o1, l1, epsilon=8.0, delta=1e-5, epochs=2)
    tight = make_private(m2, o2, l2, epsilon=0.5, delta=1e-5, epochs=2)
    assert tight.noise_multiplier > loose.noise_multiplier


def test_bad_budget_is_a_clear_error():
    model, opt, loader = _setup()
    with pytest.raises(DataError, match="epsilon"):
        make_private(model, opt, loader, epsilon=0, delta=1e-5, epochs=1)


def test_vae_with_epsilon_trains_under_dp_sgd_and_states_it(tmp_path):
    import numpy as np
    import pandas as pd

    from synthloop.schema import infer_schema
    from synthloop.synthesizers import VAESynthesizer, load_synthesizer

    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    df = pd.DataFrame({"x": rng.normal(size=400), "c": rng.choice(["a", "b"], 400)})
    public = infer_schema(df).model_copy(update={"public": True})  # 400 rows: too few to pay for bounds
    m = VAESynthesizer(epochs=2, batch_size=100, embedding_dim=8, compress_dims=(16,), decompress_dims=(16,),
                       epsilon=3.0, delta=1e-5, random_state=0).fit(df, schema=public)
    g = m.privacy_guarantee()
    assert g["differentially_private"] and 0 < g["epsilon"] <= 3.0 * 1.01
    assert len(m.history_) == 2 and "epsilon" in m.history_[-1]
    out = m.sample(50, seed=0)
    assert len(out) == 50 and set(out["c"]) <= {"a", "b"}
    back = load_synthesizer(m.save(tmp_path / "vae.npz"))
    assert guarantee_text(back).startswith(g["statement"])
    assert guarantee_text(VAESynthesizer()).startswith("No formal privacy guarantee")
