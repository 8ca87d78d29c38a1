"""The studio's view of a prompted spec: lossless JSON for the browser, canonical YAML, preview draws.

The browser edits the spec's own mapping (what the YAML file holds), never a pydantic dump, so that
saving writes back only what the user wrote, not every default. JSON cannot carry YAML's non-string
keys (`{1: 0.3, true: 0.7}`) or dates, so they travel tagged: `{"__pairs__": [[key, value], ...]}`
and `{"__date__": "2023-01-01"}` / `{"__datetime__": "..."}`; `to_client` and `from_client` are inverse.

Round trip: YAML has no comment-preserving parser here (ruamel.yaml is not a dependency), so
"unchanged" means `yaml.safe_load(saved) == yaml.safe_load(original)`; saved files are written in
one canonical style (`dump_yaml`), key order kept, comments dropped.
"""
from __future__ import annotations

import datetime as _dt
import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from synthloop.spec.errors import SpecError
from synthloop.spec.loader import parse_spec
from synthloop.spec.models import Diversity, Spec

_DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_DATETIME_RE = re.compile(r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?([+-]\d{2}:?\d{2}|Z)?$")
_ERROR_RE = re.compile(r"^.*?(?::\d+)?: ((?:columns|targets|diversity|llm|name|rows|seed|description|quotas|"
                       r"target_tolerance|\(root\))[^\s:]*): (.*)$", re.S)
HIST_DRAWS = 1000
HIST_BINS = 20


def to_client(obj: Any) -> Any:
    """Parsed YAML -> JSON-safe value, tagging what JSON would lose (non-string keys, dates)."""
    if isinstance(obj, dict):
        if all(isinstance(k, str) for k in obj):
            return {k: to_client(v) for k, v in obj.items()}
        return {"__pairs__": [[to_client(k), to_client(v)] for k, v in obj.items()]}
    if isinstance(obj, list):
        return [to_client(v) for v in obj]
    if isinstance(obj, _dt.datetime):
        return {"__datetime__": obj.isoformat()}
    if isinstance(obj, _dt.date):
        return {"__date__": obj.isoformat()}
    return obj


def from_client(obj: Any) -> Any:
    """Inverse of `to_client`; also turns ISO strings typed into a datetime sampler back into dates."""
    if isinstance(obj, dict):
        if set(obj) == {"__pairs__"} and isinstance(obj["__pairs__"], list):
            return {_key(from_client(k)): from_client(v) for k, v in (p for p in obj["__pairs__"] if isinstance(p, list) and len(p) == 2)}
        if set(obj) == {"__date__"} and isinstance(obj["__date__"], str) and _DATE_RE.match(obj["__date__"]):
            return _dt.date.fromisoformat(obj["__date__"])
        if set(obj) == {"__datetime__"} and isinstance(obj["__datetime__"], str):
            try:
                return _dt.datetime.fromisoformat(obj["__datetime__"])
            except ValueError:
                return obj["__datetime__"]  # validation names the field
        out = {k: from_client(v) for k, v in obj.items()}
        dt = out.get("datetime")
        if isinstance(dt, dict):
            for key in ("start", "end"):
                if isinstance(dt.get(key), str):
                    dt[key] = _as_date(dt[key])
        return out
    if isinstance(obj, list):
        return [from_client(v) for v in obj]
    return obj


def _key(k: Any) -> Any:
    return k if isinstance(k, (str, int, float, bool, _dt.date)) or k is None else str(k)


def _as_date(text: str) -> Any:
    try:
        if _DATE_RE.match(text):
            return _dt.date.fromisoformat(text)
        if _DATETIME_RE.match(text):
            return _dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        pass
    return text


class _Dumper(yaml.SafeDumper):
    """Block style at the top, flow style for leaf mappings and lists (as the examples are written)."""


def _str_repr(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


def _inline(items: list[Any], named: bool = False) -> bool:
    """Short collections of plain scalars go on one line; column entries and dates never do."""
    if named or not all(isinstance(v, (str, int, float, bool)) or v is None for v in items):
        return False
    return not any(isinstance(v, str) and "\n" in v for v in items) and len(repr(items)) < 90


def _dict_repr(dumper: yaml.SafeDumper, data: dict) -> yaml.Node:
    node = dumper.represent_mapping("tag:yaml.org,2002:map", data.items())
    node.flow_style = _inline([*data.keys(), *data.values()], named="name" in data)
    return node


def _list_repr(dumper: yaml.SafeDumper, data: list) -> yaml.Node:
    node = dumper.represent_sequence("tag:yaml.org,2002:seq", data)
    node.flow_style = _inline(data)
    return node


_Dumper.add_representer(str, _str_repr)
_Dumper.add_representer(dict, _dict_repr)
_Dumper.add_representer(list, _list_repr)


def dump_yaml(data: Any) -> str:
    """The canonical YAML the studio saves: key order kept, leaf collections inline, unicode as is."""
    return yaml.dump(data, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=110)


def same_yaml(a: str, b: str) -> bool:
    """What "saved back unchanged" means here: equal after parsing (comments and layout aside)."""
    return yaml.safe_load(a) == yaml.safe_load(b)


def error_of(exc: Exception) -> dict[str, str]:
    """{path, message} of a spec error, so the page can show it at the field (path like columns[2].expression)."""
    text = str(exc)
    m = _ERROR_RE.match(text)
    if m:
        return {"path": m.group(1), "message": m.group(2)}
    return {"path": "", "message": text}


def validate(data: Any, base_dir: Path) -> Spec:
    """The spec the CLI would run from this mapping (raises SpecError naming the YAML path)."""
    if not isinstance(data, dict):
        raise SpecError("studio: (root): expected a mapping with 'name', 'rows' and 'columns'")
    # text=None: there is no file yet, so errors carry the YAML path but no line
    return parse_spec(data, source="studio", base_dir=base_dir)


def sampler_only(spec: Spec) -> tuple[Spec, list[str]]:
    """The spec without its LLM columns and what reads them, and the output names left out."""
    from synthloop.spec.dag import dependencies, downstream

    deps = dependencies(spec)
    drop: set[str] = set()
    for c in spec.columns:
        if c.llm is not None:
            drop |= {c.name} | downstream(deps, c.name)
    kept = [c for c in spec.columns if c.name not in drop]
    left_out = [n for c in spec.columns if c.name in drop for n in c.output_names()]
    if not kept:
        return spec, left_out
    names = {n for c in kept for n in c.output_names()}
    sub = spec.model_copy(update={"columns": kept, "targets": {k: v for k, v in spec.targets.items() if k in names},
                                  "diversity": Diversity()})
    return sub, left_out


def records(df: pd.DataFrame) -> list[dict[str, Any]]:
    """Rows as JSON-safe dicts (dates ISO, missing as null)."""
    return json.loads(df.to_json(orient="records", date_format="iso", default_handler=str))


def histograms(spec: Spec) -> dict[str, dict[str, Any]]:
    """1,000 draws of every numeric or datetime sampler column, binned, for the live histograms.
    A column switched `by` a sampler column is drawn with that column, so its histogram is the mixture."""
    from synthloop.generate.samplers import column_rng, draw, sample_column

    out: dict[str, dict[str, Any]] = {}
    for c in spec.columns:
        s = c.sampler
        if s is None or s.kind not in ("uniform", "normal", "lognormal", "poisson", "datetime"):
            continue
        parent = next((p for p in spec.columns if s.by and p.name == s.by), None)
        if parent is not None and parent.sampler is not None and not parent.sampler.by:
            frame = pd.DataFrame({parent.name: draw(parent.sampler, HIST_DRAWS, column_rng(spec.seed, parent.name), spec.seed)})
            values = sample_column(s, frame, HIST_DRAWS, column_rng(spec.seed, c.name), spec.seed)
        else:
            values = draw(s, HIST_DRAWS, column_rng(spec.seed, c.name), spec.seed)
        if s.kind == "datetime" or pd.api.types.is_datetime64_any_dtype(values):
            ts = pd.to_datetime(values, errors="coerce")
            x = ts.astype("int64").to_numpy(dtype=float) / 1e9
            x[ts.isna().to_numpy()] = np.nan
            fmt = "datetime"
        else:
            x = pd.to_numeric(values, errors="coerce").to_numpy(dtype=float)
            fmt = "number"
        x = x[np.isfinite(x)]
        if not len(x):
            continue
        counts, edges = np.histogram(x, bins=HIST_BINS)
        out[c.name] = {"counts": counts.tolist(), "edges": edges.tolist(), "format": fmt, "n": int(len(x))}
    return out


def dag(spec: Spec) -> dict[str, Any]:
    """Nodes (spec columns, with their source) and edges (reader <- read) for the DAG view."""
    from synthloop.spec.dag import dependencies

    deps = dependencies(spec)
    return {"nodes": [{"name": c.name, "source": c.source} for c in spec.columns],
            "edges": [[src, dst] for dst, srcs in deps.items() for src in sorted(srcs)]}


def preview(spec: Spec, rows: int = 10, backend: Any = None, with_llm: bool = False,
            cache_dir: str | Path | bool = False) -> dict[str, Any]:
    """`rows` rows of the spec: sampler and expression columns always, LLM columns only on demand
    (their answers cached in `cache_dir`, so a preview after an edit the prompts do not see is instant)."""
    from synthloop.generate.runner import PromptedGenerator

    if with_llm:
        gen = PromptedGenerator(spec, backend=backend, cache_dir=cache_dir)
        df = gen.sample(rows)
        left_out: list[str] = []
    else:
        sub, left_out = sampler_only(spec)
        if sub is spec and left_out:  # every column needs the LLM
            df = pd.DataFrame(index=range(rows))
        else:
            df = PromptedGenerator(sub, cache_dir=False).sample(rows)
    columns = spec.output_columns()
    for name in columns:
        if name not in df.columns:
            df[name] = None
    return {"columns": columns, "rows": records(df[columns]), "pending": left_out}
