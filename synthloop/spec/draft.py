"""Drafting a mixed spec from a real table (`synthloop schema data.csv --spec spec.yaml`): the
structured columns are learned, free-text columns become LLM columns with a prompt drafted from the
column name and the columns it most likely depends on, and a few real examples (personal data
replaced) noted beside it for the author to edit."""
from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd
import yaml

from synthloop.errors import DataError
from synthloop.spec.models import NAME_RE

MAX_PROMPT_COLUMNS = 6


def _readable(name: str) -> str:
    return " ".join(name.replace("_", " ").replace("-", " ").split()).lower()


def _prompt_columns(df: pd.DataFrame, text_col: str, candidates: list[str]) -> list[str]:
    """Structured columns whose values shift the text most (mean length gap or word-share gap per
    category); at most MAX_PROMPT_COLUMNS, categorical ones with few values first."""
    lengths = df[text_col].astype(str).str.len()
    scores = []
    for c in candidates:
        s = df[c]
        if s.nunique(dropna=True) < 2:
            continue
        if pd.api.types.is_numeric_dtype(s) and s.nunique() > 20:
            groups = pd.qcut(s.rank(method="first"), 4, labels=False)
        else:
            top = s.astype(str).value_counts().index[:20]
            groups = s.astype(str).where(s.astype(str).isin(top))
        # how much knowing the column tells about the text: spread of mean length between groups
        gap = lengths.groupby(groups).mean()
        score = float(gap.std() / (lengths.std() or 1.0)) if len(gap) > 1 else 0.0
        first = df[text_col].astype(str).str.split().str[0].str.lower()
        share = pd.crosstab(groups, first, normalize="index")
        score += float(share.std(axis=0).max()) if share.shape[0] > 1 else 0.0
        scores.append((score, c))
    scores.sort(key=lambda t: -t[0])
    return [c for _, c in scores[:MAX_PROMPT_COLUMNS]]


def draft_spec(df: pd.DataFrame, data_path: str | Path, spec_path: str | Path, text_columns: Sequence[str] | None = None,
               name: str | None = None, rows: int = 100, model: str = "auto", examples: int = 3, seed: int = 0) -> str:
    """YAML text of a mixed spec for `df` (read from `data_path`), to be written at `spec_path`.
    `text_columns`: columns to write with the LLM (default: those inferred as free text)."""
    from synthloop.generate.textguide import style_stats
    from synthloop.generate.textprivacy import PiiIndex, common_tokens, pii_values
    from synthloop.schema import ColumnKind, infer_schema

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        schema = infer_schema(df)
    if text_columns:
        unknown = [c for c in text_columns if c not in df.columns]
        if unknown:
            raise DataError(f"--text {unknown[0]}: no such column; columns: {', '.join(map(str, df.columns))}")
        texts = list(text_columns)
    else:
        texts = [c.name for c in schema.columns if c.kind == ColumnKind.TEXT]
    rel = os.path.relpath(Path(data_path).resolve(), Path(spec_path).resolve().parent)
    structured = [c.name for c in schema.columns if c.learned and c.name not in texts]
    spec: dict[str, Any] = {
        "name": name or _identifier(Path(data_path).name.split(".")[0]),
        "rows": rows, "seed": seed,
        "learn": {"data": rel, "model": model},
        "llm": {"backend": "embedded"},
        "columns": [],
    }
    notes: list[str] = []
    for t in texts:
        real = df[t].dropna().astype(str)
        real = real[real.str.strip().ne("")]
        pii = PiiIndex(pii_values(df, (), [t]), common_tokens(real.tolist()))
        usable = [c for c in structured if NAME_RE.match(c)]  # templates read identifiers only
        shown = _prompt_columns(df.loc[real.index], t, usable) if len(real) else []
        st = style_stats(real.tolist())
        what = _readable(t)
        values = ", ".join(f"{_readable(c)} {{{{ {c} }}}}" for c in shown)
        prompt = f"Write the {what} of one record" + (f" with {values}" if values else "") + \
            f". It must agree with these values."
        max_chars = int(np.ceil(real.str.len().quantile(0.99) * 1.2)) if len(real) else 160
        pick = real.sample(min(examples, len(real)), random_state=seed).tolist() if len(real) else []
        shots = pii.scrub(pick, seed)
        spec["columns"].append({
            "name": _identifier(t),
            "description": "real examples (personal data replaced): " + " | ".join(s[:200] for s in shots),
            "llm": {"prompt": prompt, "like": t, "max_chars": max(20, min(max_chars, 20000)), "neighbours": 3},
        })
        if _identifier(t) != t:
            spec["learn"].setdefault("exclude", []).append(t)
        notes.append(f"# {t}: {st.get('n', 0)} real texts, median {st.get('words', {}).get('p50', 0)} words; "
                     f"prompt reads {', '.join(shown) or 'no column'}")
    if not texts:
        notes.append("# no free-text column found: pass --text COLUMN to write one with the LLM")
        spec["columns"].append({"name": "row_note", "llm": {"prompt": "A one-line note about this record."}})
    header = ("# Drafted by `synthloop schema --spec`: structured columns are learned from the table; free-text\n"
              "# columns are written by the LLM from each synthetic row, steered by the real texts (nearest-neighbour\n"
              "# examples with personal data replaced, style) and checked for copying and personal data.\n")
    return header + "\n".join(notes) + "\n" + yaml.safe_dump(spec, sort_keys=False, allow_unicode=True, width=120)


def _identifier(name: str) -> str:
    import re

    out = re.sub(r"[^A-Za-z0-9_]", "_", name)
    return out if out and not out[0].isdigit() else "c_" + out
