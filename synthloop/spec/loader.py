"""Load a YAML spec: parse, validate with pydantic, then cross-check columns; every error names
the file, the line and the YAML path (e.g. `spec.yaml:14: columns[2].llm.prompt: ...`)."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import yaml
from jinja2 import TemplateSyntaxError
from pydantic import ValidationError

from synthloop.spec.dag import column_reads, dependencies, find_cycle
from synthloop.spec.errors import SpecError
from synthloop.spec.models import Spec


def yaml_path(loc: tuple[Any, ...] | list[Any]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out or "(root)"


def _line_of(root: yaml.Node | None, loc: tuple[Any, ...] | list[Any]) -> int | None:
    """1-based line of the deepest YAML node on `loc` (the parent when the key is missing)."""
    node = root
    line = node.start_mark.line + 1 if node is not None else None
    for part in loc:
        nxt = None
        if isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                if str(getattr(k, "value", None)) == str(part):
                    nxt = v
                    line = k.start_mark.line + 1
                    break
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            nxt = node.value[part]
            line = nxt.start_mark.line + 1
        if nxt is None:
            break
        node = nxt
    return line


class _Where:
    def __init__(self, source: str, root: yaml.Node | None) -> None:
        self.source, self.root = source, root

    def error(self, loc: tuple[Any, ...] | list[Any], msg: str) -> SpecError:
        line = _line_of(self.root, loc)
        at = f"{self.source}:{line}" if line else self.source
        return SpecError(f"{at}: {yaml_path(loc)}: {msg}")


def _clean_loc(loc: tuple[Any, ...]) -> tuple[Any, ...]:
    # pydantic adds validator tags ("function-after[...]") and dict-key markers; drop them.
    return tuple(p for p in loc if not (isinstance(p, str) and ("[" in p or p.startswith("function-"))))


def parse_spec(data: Any, source: str = "spec", base_dir: Path | None = None, text: str | None = None,
               allow_dirs: Sequence[str | Path] = (), api_key_env: str | None = None) -> Spec:
    """Validate an already-parsed YAML mapping (text, when given, lets errors carry line numbers).

    `allow_dirs` and `api_key_env` are the user's own choices (command line or code), never the
    file's: folders besides the spec's own that seed files may lie in, and the variable holding the
    API key (a spec alone may name only `*_API_KEY` variables)."""
    root = yaml.compose(text) if text else None
    where = _Where(source, root)
    if not isinstance(data, dict):
        raise SpecError(f"{source}: expected a mapping with 'name', 'rows' and 'columns' at the top level")
    for key in ("base_dir", "source"):  # set by the loader, never by the file
        if key in data:
            raise where.error((key,), f"unknown key '{key}' (check the spelling)")
    try:
        spec = Spec.model_validate(data)
    except ValidationError as exc:
        errs = exc.errors()
        err = next((e for e in errs if e["type"] == "extra_forbidden"), errs[0])  # a typo explains 'missing'
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = f"unknown key '{err['loc'][-1]}' (check the spelling)"
        raise where.error(_clean_loc(err["loc"]), msg) from None
    spec.base_dir = base_dir or Path(".")
    spec.source = source
    for d in allow_dirs:
        spec.allow_dir(d)
    if api_key_env is not None:
        spec.llm.choose_api_key_env(api_key_env)
    elif not spec.llm.api_key_env_allowed():
        raise where.error(("llm", "api_key_env"), key_env_refusal(spec.llm.api_key_env, "a spec"))
    _check_learn(spec, where)
    _cross_check(spec, where)
    return spec


def _check_learn(spec: Spec, where: _Where) -> None:
    """Read the learn table's header and decide the learned columns; unknown names are errors."""
    learn = spec.learn
    if learn is None:
        return
    from synthloop.errors import DataError
    from synthloop.generate.learned import read_learn_table

    try:
        table = read_learn_table(spec)
    except (ValueError, OSError, DataError) as exc:
        raise where.error(("learn", "data"), f"learn table {exc}") from None
    cols = [str(c) for c in table.columns]
    spec._table_columns = cols
    own = {n for c in spec.columns for n in c.output_names()}
    for key in ("columns", "exclude", "pii"):
        for j, name in enumerate(getattr(learn, key) or []):
            if name not in cols:
                raise where.error(("learn", key, j), f"unknown column '{name}'; {learn.data} has: {', '.join(cols)}")
    if learn.columns is not None:
        for j, name in enumerate(learn.columns):
            if name in own:
                raise where.error(("learn", "columns", j), f"'{name}' is also a spec column; learn it or write it, not both")
        spec._learned = list(learn.columns)
    else:
        spec._learned = [c for c in cols if c not in own and c not in set(learn.exclude)]
    for i, col in enumerate(spec.columns):
        if col.llm is not None and col.llm.like is not None and col.llm.like not in cols:
            raise where.error(("columns", i, "llm", "like"), f"unknown column '{col.llm.like}'; {learn.data} has: {', '.join(cols)}")


def key_env_refusal(name: str, what: str) -> str:
    return (f"{name} does not look like an API-key variable, and {what} alone may only name variables "
            f"ending in _API_KEY (so that a shared file cannot send another secret to its server); "
            f"if {name} really holds the key, pass --api-key-env {name}")


def _cross_check(spec: Spec, where: _Where) -> None:
    from synthloop.generate.expr import ExpressionError

    # names: spec columns and flattened structured fields must not clash
    seen: dict[str, int] = {}
    for i, col in enumerate(spec.columns):
        for name in {col.name, *col.output_names()}:
            if name in seen and seen[name] != i:
                raise where.error(("columns", i, "name"), f"column name '{name}' is already used by columns[{seen[name]}]")
            seen[name] = i
    known = set(seen) | set(spec.learned_columns)
    for i, col in enumerate(spec.columns):
        try:
            reads = column_reads(col)
        except ExpressionError as exc:
            part = ("expression",) if col.expression is not None else ("llm", "checks", "expressions")
            raise where.error(("columns", i, *part), str(exc)) from None
        except TemplateSyntaxError as exc:
            raise where.error(("columns", i, "llm", *_template_part(col, exc.source)),
                              f"template syntax error (line {exc.lineno} of the template): {exc.message}") from None
        for sub, names in reads.items():
            unknown = sorted(names - known)
            if unknown:
                hint = (" (a {{ placeholder }} must name a column of the spec)"
                        if sub.startswith(("llm.constraints", "llm.avoid", "llm.checks.judge", "llm.start")) else "")
                raise where.error(
                    ("columns", i, *(int(p) if p.isdigit() else p for p in sub.split("."))),
                    f"unknown column '{unknown[0]}'{hint}; known columns: {', '.join(sorted(known))}",
                )
        if col.llm is not None and col.llm.checks is not None:
            _check_checks(spec, col, i, where)
        if col.llm is not None and col.llm.few_shot is not None:
            try:
                path = spec.resolve_file(col.llm.few_shot.file)
            except (ValueError, OSError) as exc:
                raise where.error(("columns", i, "llm", "few_shot", "file"), f"seed file {exc}") from None
            if not path.exists():
                raise where.error(("columns", i, "llm", "few_shot", "file"), f"seed file {spec.base_dir / col.llm.few_shot.file} not found")
    deps = dependencies(spec)
    cycle = find_cycle(deps)
    if cycle:
        idx = [c.name for c in spec.columns].index(cycle[0])
        raise where.error(("columns", idx), "columns form a cycle: " + " -> ".join(cycle) + "; break it by removing one reference")
    producer = spec.producer()
    for name, shares in spec.targets.items():
        if name not in producer:
            raise where.error(("targets", name), f"unknown column '{name}'")
        allowed = _categories_of(spec, name)
        if allowed is None:
            raise where.error(("targets", name), "targets need a categorical sampler column or an LLM schema field with an enum")
        bad = [v for v in shares if v not in allowed]
        if bad:
            raise where.error(("targets", name), f"value {bad[0]!r} is not one of {allowed}")
        if any(s < 0 for s in shares.values()) or abs(sum(shares.values()) - 1.0) > 1e-6:
            raise where.error(("targets", name), f"shares must be >= 0 and sum to 1 (they sum to {sum(shares.values()):.4g})")
    for j, name in enumerate(spec.diversity.columns or []):
        if name not in producer:
            raise where.error(("diversity", "columns", j), f"unknown column '{name}'")


def _template_part(col: Any, source: str | None) -> tuple[Any, ...]:
    """The YAML path (below `llm`) of the template whose text is `source`."""
    llm = col.llm
    if llm is None:
        return ("prompt",)
    if llm.system and source == llm.system:
        return ("system",)
    if llm.start and source == llm.start:
        return ("start",)
    for key in ("constraints", "avoid"):
        for j, text in enumerate(getattr(llm, key)):
            if source == text:
                return (key, j)
    if llm.checks is not None and source == llm.checks.judge:
        return ("checks", "judge")
    return ("prompt",)


def _check_checks(spec: Spec, col: Any, i: int, where: _Where) -> None:
    """`checks:` of an LLM column: fields exist, agrees_with names a column with known values."""
    ch = col.llm.checks
    at = ("columns", i, "llm", "checks")
    fields = list(col.llm.json_schema["properties"]) if col.llm.structured else []
    if ch.field is not None and ch.field not in fields:
        raise where.error((*at, "field"), f"'{ch.field}' is not a field of this column's schema"
                          + (f" ({', '.join(fields)})" if fields else " (text columns check their own text)"))
    producer = spec.producer()
    for label, ref in ch.agrees_with.items():
        name = ref.split(".", 1)[1] if "." in ref and ref.split(".", 1)[0] in producer else ref
        if name not in producer and name not in spec.learned_columns:
            raise where.error((*at, "agrees_with", label), f"unknown column '{ref}'; known columns: {', '.join(sorted(producer))}")
        if _categories_of(spec, name) is None:
            raise where.error((*at, "agrees_with", label), f"'{ref}' has no known set of values; name a categorical "
                              "sampler column or a schema field with an enum")
    for j, ref in enumerate(ch.must_mention):
        name = ref.split(".", 1)[1] if "." in ref and ref.split(".", 1)[0] in producer else ref
        if name not in producer and name not in spec.learned_columns:
            raise where.error((*at, "must_mention", j), f"unknown column '{ref}'; known columns: {', '.join(sorted(producer))}")


MAX_LEARNED_CATEGORIES = 100


def _categories_of(spec: Spec, name: str) -> list[Any] | None:
    if name in spec.learned_columns and name not in spec.producer():  # a learned column: the table's values
        import pandas as pd

        from synthloop.generate.learned import read_learn_table

        values = read_learn_table(spec)[name].dropna()
        if pd.api.types.is_float_dtype(values) or values.nunique() > MAX_LEARNED_CATEGORIES:
            return None
        return sorted(pd.unique(values).tolist(), key=str)
    col = spec.producer()[name]
    if col.sampler is not None and col.name == name and col.sampler.categorical is not None and not col.sampler.by:
        return list(col.sampler.categorical)
    if col.llm is not None and col.llm.structured and name != col.name:
        prop = col.llm.json_schema["properties"][name]  # type: ignore[index]
        if isinstance(prop, dict) and isinstance(prop.get("enum"), list):
            return list(prop["enum"])
    return None


def load_spec(path: str | Path, allow_dirs: Sequence[str | Path] = (), api_key_env: str | None = None) -> Spec:
    """Read and validate a YAML spec file; paths inside it are relative to, and must lie inside, its
    folder (or one of `allow_dirs`); see parse_spec for `api_key_env`."""
    from synthloop.io import read_yaml

    p = Path(path)
    data, text = read_yaml(p, SpecError, "spec file")
    return parse_spec(data, str(p), p.resolve().parent, text, allow_dirs, api_key_env)


def loads_spec(text: str, source: str = "spec", base_dir: Path | None = None, allow_dirs: Sequence[str | Path] = (),
               api_key_env: str | None = None) -> Spec:
    """Validate a spec given as YAML text (tests, notebooks)."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise SpecError(f"{source}: not valid YAML: {exc}") from None
    return parse_spec(data, source, base_dir, text, allow_dirs, api_key_env)
