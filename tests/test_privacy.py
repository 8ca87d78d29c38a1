import numpy as np
import pandas as pd
import pytest

from synthloop import GaussianCopulaSynthesizer, infer_schema
from synthloop.evaluate import dcr_share, exact_copy_rate


def test_copies_of_training_rows_are_counted(mixed_table):
    schema = infer_schema(mixed_table)
    fake = pd.concat([mixed_table.head(50), mixed_table.tail(50).assign(age=200)], ignore_index=True)
    assert exact_copy_rate(mixed_table, fake, schema) == pytest.approx(0.5)


def test_dcr_share_flags_memorization_and_accepts_a_fresh_sample(adult):
    train, holdout = adult.iloc[:6000].reset_index(drop=True), adult.iloc[6000:12000].reset_index(drop=True)
    schema = infer_schema(train)
    copies = dcr_share(train, train.sample(2000, random_state=0), holdout, schema)
    assert copies["dcr_share"] > 0.9
    synth = GaussianCopulaSynthesizer().fit(train, schema).sample(3000, seed=1)
    fresh = dcr_share(train, synth, holdout, schema)
    assert 0.4 < fresh["dcr_share"] < 0.6
    assert exact_copy_rate(train, synth, schema) < 0.01
