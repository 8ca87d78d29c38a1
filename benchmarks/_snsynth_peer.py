"""Peer runner for bench_dp.py: smartnoise-synth's MST (or AIM) on a CSV, in its own interpreter.

smartnoise-synth 1.0.8 pins opacus<0.15 and pulls jax, so it lives in a separate virtual environment
(see bench_dp.py's docstring); this file runs there and talks to the benchmark through files only:
    python _snsynth_peer.py TRAIN.csv SCHEMA.json OUT.csv EPSILON DELTA SEED [mst|aim]
It gets the same public information as synthloop's DP synthesizer: categories, numerical bounds from
the schema (BinTransformer with those bounds, 20 bins, no preprocessing budget spent), integer
columns with at most 128 public values as ordinal columns.
"""
import json
import sys
import time

import numpy as np
import pandas as pd
from snsynth import Synthesizer
from snsynth.transform import BinTransformer, TableTransformer

train_csv, schema_json, out_csv, eps, delta, seed = sys.argv[1:7]
kind = sys.argv[7] if len(sys.argv) > 7 else "mst"
np.random.seed(int(seed))
df = pd.read_csv(train_csv)
schema = json.load(open(schema_json))
cat, ordinal, cont, constraints = [], [], [], {}
for c in schema["columns"]:
    if c["kind"] in ("categorical", "boolean"):
        cat.append(c["name"])
    elif c["kind"] == "numerical" and c.get("decimals") == 0 and c["max"] - c["min"] + 1 <= 128:
        ordinal.append(c["name"])
    else:
        cont.append(c["name"])
        constraints[c["name"]] = BinTransformer(bins=20, lower=c["min"], upper=c["max"])
df[cat] = df[cat].astype(str)
transformer = TableTransformer.create(df, style="cube", categorical_columns=cat, ordinal_columns=ordinal,
                                      continuous_columns=cont, constraints=constraints)
t0 = time.time()
synth = Synthesizer.create(kind, epsilon=float(eps), delta=float(delta), verbose=False)
synth.fit(df, transformer=transformer, preprocessor_eps=0.0)
t1 = time.time()
out = synth.sample(len(df))
t2 = time.time()
out.to_csv(out_csv, index=False)
print(json.dumps({"fit_s": t1 - t0, "sample_s": t2 - t1}))
