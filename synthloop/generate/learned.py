"""The learned half of a mixed spec: a synthesizer fitted on the `learn:` table writes the structured
columns, conditioned on the sampler columns that share a name with the table (drawn first, e.g. a
planned quota on `region`); LLM, sampler and expression columns then read its values."""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from synthloop.spec.errors import GenerationError, SpecError
from synthloop.spec.models import Spec

_TABLES: dict[tuple[str, float, int], pd.DataFrame] = {}


def read_learn_table(spec: Spec) -> pd.DataFrame:
    """The learn table (at most `learn.max_rows` rows, a seeded sample), read once per process."""
    from synthloop.io import read_table

    assert spec.learn is not None
    path = spec.resolve_file(spec.learn.data)
    if not path.exists():
        raise ValueError(f"{spec.base_dir / spec.learn.data} not found")
    key = (str(path), path.stat().st_mtime, spec.learn.max_rows)
    if key not in _TABLES:
        df = read_table(path)
        if len(df) > spec.learn.max_rows:
            df = df.sample(spec.learn.max_rows, random_state=0).reset_index(drop=True)
        df.columns = [str(c) for c in df.columns]
        _TABLES[key] = df
    return _TABLES[key]


class LearnedPart:
    """Fits (or is given) the synthesizer of a mixed spec and samples its columns for a plan.

    `model`: an already fitted synthesizer (e.g. one the caller also samples alone, for comparison);
    `model_path`: where to keep the fitted model so that a resumed run samples the same rows."""

    def __init__(self, spec: Spec, model: Any = None, model_path: str | Path | None = None) -> None:
        if spec.learn is None:
            raise SpecError(f"{spec.source}: the spec has no learn: block")
        self.spec = spec
        self.model_ = model
        self.model_path = Path(model_path) if model_path is not None else None

    @property
    def real(self) -> pd.DataFrame:
        return read_learn_table(self.spec)

    def fit_columns(self) -> list[str]:
        cond = self.spec.conditioning_columns()
        return [c for c in self.spec._table_columns if c in set(self.spec.learned_columns) | set(cond)]

    def model(self) -> Any:
        """The fitted synthesizer: given, loaded from `model_path`, or fitted now (and saved there)."""
        if self.model_ is not None:
            return self.model_
        from synthloop.synthesizers.base import load_synthesizer
        from synthloop.synthesizers.factory import make_synthesizer

        if self.model_path is not None and self.model_path.exists():
            self.model_ = load_synthesizer(self.model_path)
            return self.model_
        learn = self.spec.learn
        assert learn is not None
        data = self.real[self.fit_columns()]
        synth = make_synthesizer(learn.model, self.spec.seed, epochs=learn.epochs, max_seconds=learn.max_seconds,
                                 shape=data.shape)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # schema-inference notes: the spec author chose the columns
            synth.fit(data)
        if self.model_path is not None:
            synth.save(self.model_path)
        self.model_ = synth
        return synth

    def sample(self, frame: pd.DataFrame, n: int) -> pd.DataFrame:
        """`n` rows of the learned columns, conditioned row by row on the conditioning columns of `frame`."""
        from synthloop.errors import ConditionError

        cond = [c for c in self.spec.conditioning_columns() if c in frame.columns]
        model = self.model()
        try:
            if cond:
                known = frame[cond].reset_index(drop=True).astype(object)
                df = model.sample(conditions=known, seed=self.spec.seed)
            else:
                df = model.sample(n, seed=self.spec.seed)
        except ConditionError as exc:
            raise GenerationError(f"{self.spec.source}: learn: a sampler column conditions the learned model with a "
                                  f"value it cannot produce: {exc}") from None
        return df[[c for c in self.spec.learned_columns if c in df.columns]].reset_index(drop=True)


def learned_dependent(spec: Spec) -> set[str]:
    """Spec columns that read a learned column, directly or through other spec columns."""
    from synthloop.spec.dag import column_reads, dependencies

    learned = set(spec.learned_columns)
    deps = dependencies(spec)
    out = {c.name for c in spec.columns if set().union(*column_reads(c).values()) & learned} if learned else set()
    changed = True
    while changed:
        more = {c for c, d in deps.items() if d & out} - out
        changed = bool(more)
        out |= more
    return out

