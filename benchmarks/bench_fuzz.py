"""Issue 13 benchmark: fuzzing the untrusted inputs (expressions, templates, model files, journals).

Three parts, each a stream of seeded-random cases run in a worker process with a per-case watchdog
(a hang is killed and counted as a timeout instead of hanging the benchmark; the worker runs under an
address-space limit, so a memory blow-up is a MemoryError, counted as a traceback):

- expressions: 10,000 generated expressions (valid ones, hostile ones: huge powers and repeats,
  deep nesting, long sums, escapes, garbage) through both expression languages (spec expressions:
  `parse_expression` + `evaluate`; constraints: `Expression` + `is_valid`) and prompt templates (a
  spec holding the template, `loads_spec`, then `render` in the sandbox), plus the time to check a
  42 KB expression in each language (target < 50 ms);
- models: 1,000 mutated model files (byte flips, truncations, forged headers, changed arrays) of the
  five model classes through `load_synthesizer`, `sample` and a conditional `sample`;
- journals: 1,000 mutated journals of an interrupted prompted run (a scripted backend, no network)
  through the resume path (`PromptedGenerator.generate(out=...)`).

A case ends as a clean error (a SynthloopError), a success, a traceback (any other exception), a
timeout or a crash (the worker died). Targets: 0 tracebacks, 0 timeouts, 0 crashes. One JSON line per
part. Run: `python benchmarks/bench_fuzz.py` (or `--quick`: a tenth of the cases; `--parts models`).
"""
from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import random
import shutil
import sys
import tempfile
import time
import traceback
from collections import Counter
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parents[1]
SEED = 0
MEMORY_LIMIT = 6 * 1024**3  # per worker (address space): a blow-up is a MemoryError, not a swapped-out box
FULL = {"expressions": 10_000, "models": 1_000, "journals": 1_000}


def emit(row: dict) -> None:
    print(json.dumps(row), flush=True)


# -- the worker ---------------------------------------------------------------------------------------
def _worker(conn: Any, part: str, memory_limit: int) -> None:
    """Run cases sent over `conn`; answer (status, detail) for each."""
    sys.path.insert(0, str(ROOT))
    try:
        import resource

        resource.setrlimit(resource.RLIMIT_AS, (memory_limit, memory_limit))
    except (ImportError, ValueError, OSError):
        pass
    import warnings

    warnings.simplefilter("ignore")
    from synthloop.errors import SynthloopError

    run = RUNNERS[part]()
    conn.send(("ready", ""))
    while True:
        try:
            case = conn.recv()
        except EOFError:
            return
        if case is None:
            return
        try:
            detail = run(case)
            conn.send(("success", detail or ""))
        except SynthloopError as exc:
            conn.send(("clean", " ".join(str(exc).split())[:200]))
        except BaseException as exc:  # noqa: BLE001 - the point is to count these
            tb = traceback.extract_tb(exc.__traceback__)
            where = next((f"{Path(f.filename).name}:{f.lineno}" for f in reversed(tb) if "synthloop" in f.filename), "?")
            conn.send(("traceback", f"{type(exc).__name__} at {where}: {' '.join(str(exc).split())[:160]}"))


class Harness:
    """One worker process at a time; a case that outlives `timeout` kills the worker (a new one starts)."""

    def __init__(self, part: str, timeout: float, memory_limit: int = MEMORY_LIMIT):
        self.part, self.timeout, self.memory_limit = part, timeout, memory_limit
        self.ctx = mp.get_context("spawn")
        self.proc: Any = None
        self.conn: Any = None

    def _start(self) -> None:
        parent, child = self.ctx.Pipe()
        self.proc = self.ctx.Process(target=_worker, args=(child, self.part, self.memory_limit), daemon=True)
        self.proc.start()
        child.close()
        self.conn = parent
        if not parent.poll(300):
            raise RuntimeError(f"the {self.part} worker did not start")
        parent.recv()

    def _stop(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.join(10)
        self.proc = self.conn = None

    def run(self, case: Any) -> tuple[str, str, float]:
        if self.proc is None or not self.proc.is_alive():
            self._start()
        t0 = time.perf_counter()
        try:
            self.conn.send(case)
            if self.conn.poll(self.timeout):
                status, detail = self.conn.recv()
                return status, detail, time.perf_counter() - t0
        except (EOFError, BrokenPipeError, ConnectionResetError):
            code = self.proc.exitcode if self.proc is not None else None
            self._stop()
            return "crash", f"worker died (exit code {code})", time.perf_counter() - t0
        alive = self.proc.is_alive()
        self._stop()
        if not alive:
            return "crash", "worker died", time.perf_counter() - t0
        return "timeout", f"no answer within {self.timeout:g} s", time.perf_counter() - t0

    def close(self) -> None:
        if self.proc is not None and self.proc.is_alive():
            try:
                self.conn.send(None)
                self.proc.join(5)
            except (BrokenPipeError, OSError):
                pass
        self._stop()


def tally(part: str, harness: Harness, cases: list[tuple[str, Any]], extra: dict | None = None) -> dict:
    """Run every (label, case); count outcomes overall and per label; keep a few examples of failures."""
    counts: Counter = Counter()
    by_label: dict[str, Counter] = {}
    examples: dict[str, list[str]] = {"traceback": [], "timeout": [], "crash": []}
    t0 = time.perf_counter()
    slowest = 0.0
    for label, case in cases:
        status, detail, secs = harness.run(case)
        counts[status] += 1
        by_label.setdefault(label, Counter())[status] += 1
        if status != "timeout":
            slowest = max(slowest, secs)
        if status in examples and len(examples[status]) < 8:
            shown = case if isinstance(case, str) else case.get("show", "") if isinstance(case, dict) else ""
            examples[status].append(f"[{label}] {detail} <- {str(shown)[:120]!r}")
    harness.close()
    row = {
        "benchmark": "fuzz", "part": part, "cases": len(cases),
        "clean_errors": counts["clean"], "successes": counts["success"], "tracebacks": counts["traceback"],
        "timeouts": counts["timeout"], "crashes": counts["crash"],
        "targets": {"tracebacks": 0, "timeouts": 0, "crashes": 0},
        "met": counts["traceback"] == 0 and counts["timeout"] == 0 and counts["crash"] == 0,
        "per_case_timeout_s": harness.timeout, "slowest_answered_case_s": round(slowest, 3),
        "seconds": round(time.perf_counter() - t0, 1), "seed": SEED,
        "by_kind": {k: dict(v) for k, v in sorted(by_label.items())},
        "examples": {k: v for k, v in examples.items() if v},
    }
    row.update(extra or {})
    return row


# -- part (a): expressions and templates ---------------------------------------------------------------
COLUMNS = ["a", "b", "c", "s", "d"]
FUNCS = ["abs", "round", "sqrt", "log", "exp", "min", "max", "floor", "ceil", "len", "clip", "where", "concat",
         "lower", "year", "coalesce", "isnull", "int", "str"]
HOSTILE = [
    "10**10**10", "2**(2**40)", "'a'*10**9", "'ab'*(10**5)*(10**5)", "[1]*10**10", "(10**8)**(10**8)",
    "a**10**100", "9**9**9**9", "-(-(-(-(1))))", "not not not a", "1" + "+1" * 5000, "-" * 100_000 + "1",
    "(" * 200 + "1" + ")" * 200, "(" * 5000 + "1" + ")" * 5000, "a.__class__", "a.__class__.__mro__",
    "__import__('os').system('true')", "open('/etc/passwd')", "eval('1')", "exec('x=1')", "(lambda: 1)()",
    "[x for x in range(10**9)]", "{1: 2}", "a[0]", "a if b else c", "globals()", "getattr(a, 'x')",
    "'%s' % a", "f'{a}'", "b'x'", "1j", "...", "None", "a @ b", "a << 1000000", "1e308 * 1e308",
    "round(a, 10**9)", "clip(a, 1, 0)", "concat(" + ", ".join(["s"] * 5000) + ")", "min(a)", "log(-1)",
    "len(s) * 10**18", "max(" + ",".join(["a"] * 3000) + ")", "year(s)", "str(10**5000)", "int(1e308)",
    "where(a > 0, 'x' * 10**8, s)", "a == " + "a == " * 3000 + "a", "True" + " and True" * 20000,
]
JINJA_HOSTILE = [
    "{% for i in range(10**9) %}x{% endfor %}", "{{ 'a' * 10**10 }}", "{{ 10**(10**10) }}", "{{ range(10**12)|list }}",
    "{{ ''.__class__.__mro__ }}", "{{ cycler.__init__.__globals__ }}", "{{ lipsum.__globals__ }}",
    "{% set x = [1] %}{% for i in range(30) %}{% set x = x + x %}{% endfor %}{{ x|length }}",
    "{{ ('a' * 1000) * 1000 * 1000 }}", "{{ '%s'|format(a) * 10**9 }}", "{% macro m() %}{{ m() }}{% endmacro %}{{ m() }}",
    "{{ a|attr('__class__') }}", "{{ self._TemplateReference__context }}", "{{ [1,2]|join * 10**10 }}",
    "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}", "{{ 9**9**9 }}",
    "{% raw %}" * 500, "{{" * 3000, "{{ a " + "+ a " * 5000 + "}}", "{{ " + "(" * 1000 + "a" + ")" * 1000 + " }}",
]


def _random_expr(rng: random.Random, depth: int = 0) -> str:
    r = rng.random()
    if depth > 4 or r < 0.25:
        leaf = rng.random()
        if leaf < 0.5:
            return rng.choice(COLUMNS)
        if leaf < 0.8:
            return str(rng.choice([0, 1, 2, -1, 10, 0.5, 1e308, 10**rng.randint(1, 30), rng.randint(-1000, 1000)]))
        return repr(rng.choice(["x", "", "abc", "2020-01-01", "a" * rng.randint(0, 50)]))
    if r < 0.5:
        op = rng.choice(["+", "-", "*", "/", "//", "%", "**", "<", "<=", "==", "!=", ">", "and", "or", "in", "not in"])
        return f"({_random_expr(rng, depth + 1)} {op} {_random_expr(rng, depth + 1)})"
    if r < 0.6:
        return f"{rng.choice(['-', '+', 'not '])}{_random_expr(rng, depth + 1)}"
    if r < 0.8:
        args = ", ".join(_random_expr(rng, depth + 1) for _ in range(rng.randint(0, 3)))
        return f"{rng.choice(FUNCS)}({args})"
    if r < 0.88:
        return f"({_random_expr(rng, depth + 1)} if {_random_expr(rng, depth + 1)} else {_random_expr(rng, depth + 1)})"
    if r < 0.94:
        return "[" + ", ".join(_random_expr(rng, depth + 1) for _ in range(rng.randint(0, 3))) + "]"
    return rng.choice(HOSTILE)


def _mutate_text(rng: random.Random, text: str) -> str:
    """Character-level damage: delete, duplicate or insert a random character or slice."""
    if not text:
        return rng.choice("()[]{}'\"+*")
    i = rng.randrange(len(text))
    r = rng.random()
    if r < 0.3:
        return text[:i] + text[i + 1:]
    if r < 0.6:
        return text[:i] + rng.choice("()[]{}.,'\"+-*/%<>=!~^|&:;#\\@ 0123456789abcxyz_\n\t\x00é") + text[i:]
    j = rng.randrange(i, len(text) + 1)
    return text[:i] + text[i:j] * rng.randint(2, 4) + text[j:]


def expression_cases(n: int) -> list[tuple[str, Any]]:
    rng = random.Random(SEED)
    cases: list[tuple[str, Any]] = []
    for k in range(n):
        lang = ("spec_expr", "constraint", "jinja")[k % 3]
        r = rng.random()
        if r < 0.15:
            src = rng.choice(JINJA_HOSTILE if lang == "jinja" else HOSTILE)
            kind = "hostile"
        elif r < 0.3:
            src = "".join(rng.choice("abcs()+-*/%<>=! .,'\"[]{}0123456789_\\|&^~") for _ in range(rng.randint(1, 40)))
            kind = "garbage"
        else:
            src = _random_expr(rng)
            if rng.random() < 0.3:
                src = _mutate_text(rng, src)
            kind = "generated"
        if lang == "jinja" and kind != "hostile":
            src = "{{ " + src + " }}" if rng.random() < 0.8 else "{% if " + src + " %}yes{% endif %}"
        cases.append((f"{lang}/{kind}", {"lang": lang, "src": src, "show": src}))
    return cases


def _expression_runner() -> Callable[[dict], str]:
    import numpy as np
    import pandas as pd

    import yaml

    from synthloop.constraints.expression import Expression
    from synthloop.errors import SynthloopError
    from synthloop.generate.expr import parse_expression
    from synthloop.generate.prompts import render
    from synthloop.spec import loads_spec

    samplers = [{"name": name, "sampler": {"uniform": {"min": 0, "max": 10}}} for name in ("a", "b", "c")]
    samplers += [{"name": "s", "sampler": {"categorical": {"x": 1.0}}},
                 {"name": "d", "sampler": {"categorical": {"2020-01-01": 1.0}}}]

    df = pd.DataFrame({"a": np.arange(5, dtype=float) - 2, "b": [1, 2, 3, 4, 5], "c": [0.5, np.nan, 2.0, 3.0, 1e6],
                       "s": ["x", "yy", None, "2020-01-02", "abc"], "d": pd.date_range("2020-01-01", periods=5)})
    ctx = {"a": 1.5, "b": 2, "c": None, "s": "text", "d": "2020-01-01"}

    def run(case: dict) -> str:
        lang, src = case["lang"], case["src"]
        if lang == "spec_expr":
            parse_expression(src).evaluate(df)
        elif lang == "constraint":
            Expression(src).is_valid(df)
        elif lang == "check42":  # check only, timed inside the worker
            t0 = time.perf_counter()
            try:
                parse_expression(src) if case["which"] == "spec_expr" else Expression(src)
                outcome = "accepted"
            except SynthloopError as exc:
                outcome = f"clean error ({type(exc).__name__})"
            except Exception as exc:  # noqa: BLE001
                outcome = f"traceback ({type(exc).__name__})"
            return json.dumps({"ms": (time.perf_counter() - t0) * 1000, "outcome": outcome})
        else:  # a prompt template: checked by the spec loader, then rendered in the sandbox
            spec = loads_spec(yaml.safe_dump({"name": "fuzz", "rows": 1, "columns": samplers + [
                {"name": "out", "llm": {"prompt": src}}]}))
            render(spec.columns[-1].llm.prompt, ctx, "fuzz")
        return ""

    return run


def check_42kb(harness_timeout: float) -> dict:
    """Seconds to check (parse + whitelist) a 42 KB expression in each language: a sum of function calls,
    the shape that made the whitelist walk quadratic."""
    terms, i = [], 0
    while sum(len(t) + 3 for t in terms) < 42_000:
        terms.append(f"abs(a - {i})")
        i += 1
    # Two shapes of the same 42 KB: one flat sum (2,700 levels deep: refused by the nesting cap, and the
    # refusal must be as fast as a check) and the same terms summed in groups of 50 (accepted).
    shapes = {"flat": " + ".join(terms) + " > 0",
              "grouped": " + ".join("(" + " + ".join(terms[j:j + 50]) + ")" for j in range(0, len(terms), 50)) + " > 0"}
    harness = Harness("expressions", harness_timeout)
    out: dict[str, Any] = {"benchmark": "fuzz", "part": "check_42kb_expression",
                           "chars": {k: len(v) for k, v in shapes.items()}, "terms": len(terms), "target_ms": 50}
    for shape, src in shapes.items():
        for which in ("spec_expr", "constraint"):
            best = None
            for _ in range(3):  # best of 3: the figure is the check's cost, not the machine's other load
                status, detail, secs = harness.run({"lang": "check42", "which": which, "src": src})
                if status == "success":
                    got = json.loads(detail)
                    res = {"ms": round(got["ms"], 2), "outcome": got["outcome"]}
                else:
                    res = {"ms": None if status == "timeout" else round(secs * 1000, 2), "outcome": status, "detail": detail}
                if best is None or (res["ms"] is not None and (best["ms"] is None or res["ms"] < best["ms"])):
                    best = res
            out[f"{which}_{shape}"] = best
    harness.close()
    keys = [k for k in out if k.startswith(("spec_expr_", "constraint_"))]
    out["met"] = all(isinstance(out[w]["ms"], float) and out[w]["ms"] < 50 and not out[w]["outcome"].startswith("traceback")
                     for w in keys)
    return out


# -- part (b): model files -----------------------------------------------------------------------------
MODEL_KINDS = [("copula", {}), ("dp", {}), ("gan", {"epochs": 1}), ("vae", {"epochs": 1}),
               ("autoregressive", {"epochs": 1, "max_seconds": 5})]
JSON_VALUES: list[Any] = [None, True, False, 0, 1, -1, 2, 10**12, -(10**12), 1e12, 1.5, float("nan"), float("inf"),
                          "", "x", "a" * 300, [], [1, 2], [[[]]], {}, {"a": 1}, {"class": "copula"}]


def _small_table(n: int = 300):
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(SEED)
    age = rng.integers(18, 90, n)
    income = np.round(age * 900 + rng.normal(0, 4000, n), 2)
    income[rng.random(n) < 0.1] = np.nan
    seg = rng.choice(["retail", "sme", "corporate"], n, p=[0.6, 0.3, 0.1]).astype(object)
    return pd.DataFrame({
        "id": np.arange(n), "age": age, "income": income, "segment": seg, "active": rng.random(n) < 0.7,
        "opened": (pd.Timestamp("2020-01-01") + pd.to_timedelta(rng.integers(0, 900, n), unit="D")).strftime("%Y-%m-%d"),
        "email": [f"u{i}@example.com" for i in range(n)],
    })


def fit_base_models(folder: Path) -> dict[str, Path]:
    sys.path.insert(0, str(ROOT))
    from synthloop.schema import infer_schema
    from synthloop.synthesizers import synthesizer_class

    df = _small_table()
    schema = infer_schema(df)
    paths = {}
    public = infer_schema(df, overrides={"public": True})  # the DP model needs a declared (or paid-for) domain
    for name, params in MODEL_KINDS:
        model = synthesizer_class(name)(**params).fit(df, public if name == "dp" else schema)
        paths[name] = model.save(folder / f"{name}.npz")
    return paths


def _json_paths(value: Any, path: tuple = ()) -> list[tuple]:
    out = [path]
    if isinstance(value, dict):
        for k, v in value.items():
            out += _json_paths(v, path + (k,))
    elif isinstance(value, list):
        for i, v in enumerate(value[:20]):
            out += _json_paths(v, path + (i,))
    return out


def _set_path(root: Any, path: tuple, fn: Callable[[Any], Any]) -> Any:
    if not path:
        return fn(root)
    node = root
    for p in path[:-1]:
        node = node[p]
    node[path[-1]] = fn(node[path[-1]])
    return root


def _mutate_header(rng: random.Random, header: Any) -> Any:
    paths = _json_paths(header)
    path = rng.choice(paths)
    r = rng.random()
    if r < 0.55:
        value = rng.choice(JSON_VALUES)
        return _set_path(header, path, lambda old: value)
    if r < 0.75 and path:  # delete
        parent = header
        for p in path[:-1]:
            parent = parent[p]
        del parent[path[-1]]
        return header
    if r < 0.9:  # numbers scaled to absurd sizes (what sizes arrays in the classes' state)
        return _set_path(header, path, lambda old: (old * rng.choice([10**6, 10**9, -1, 0]) if isinstance(old, (int, float))
                                                    and not isinstance(old, bool) else old))
    parent_paths = [p for p in paths if isinstance(_get(header, p), dict)]
    target = _get(header, rng.choice(parent_paths)) if parent_paths else None
    if isinstance(target, dict):
        target[rng.choice(["zz", "extra", "__class__", "params", "n_knots"])] = rng.choice(JSON_VALUES)
    return header


def _get(root: Any, path: tuple) -> Any:
    for p in path:
        root = root[p]
    return root


def _mutate_arrays(rng: random.Random, arrays: dict) -> dict:
    import numpy as np

    if not arrays:
        return arrays
    key = rng.choice(sorted(arrays))
    a = arrays[key]
    r = rng.random()
    if r < 0.15:
        del arrays[key]
    elif r < 0.25:
        arrays[rng.choice(["zz", key + "x", "__header__x"])] = np.zeros(rng.choice([0, 3, 100]))
    elif r < 0.4:
        arrays[key] = a.astype(rng.choice([np.float32, np.int8, np.bool_, np.float64, np.int64, np.uint8]))
    elif r < 0.55:
        arrays[key] = a.reshape(-1) if a.ndim != 1 else (a[:-1] if a.size else np.zeros((2, 2)))
    elif r < 0.7 and a.dtype.kind == "f" and a.size:
        b = a.copy()
        b.flat[rng.randrange(b.size)] = rng.choice([np.nan, np.inf, -np.inf, 1e300, -1e300, 0.0])
        arrays[key] = b
    elif r < 0.8 and a.size:
        b = a.copy()
        flat = b.reshape(-1)
        flat[:] = flat[np.random.default_rng(rng.randrange(2**31)).permutation(flat.size)]
        arrays[key] = b
    elif r < 0.9:
        arrays[key] = np.zeros((0,) + a.shape[1:], dtype=a.dtype)
    else:
        arrays[key] = np.concatenate([a, a]) if a.ndim else a
    return arrays


def model_cases(n: int, bases: dict[str, Path], folder: Path) -> list[tuple[str, Any]]:
    import numpy as np

    rng = random.Random(SEED + 1)
    raw = {k: p.read_bytes() for k, p in bases.items()}
    cases = []
    for k in range(n):
        kind = MODEL_KINDS[k % len(MODEL_KINDS)][0]
        data = raw[kind]
        path = folder / f"m{k}.npz"
        r = rng.random()
        if r < 0.35:  # byte-level damage
            b = bytearray(data)
            how = rng.choice(["flip", "flip", "truncate", "overwrite", "append", "delete", "zero"])
            if how == "flip":
                for _ in range(rng.randint(1, 16)):
                    b[rng.randrange(len(b))] ^= 1 << rng.randrange(8)
            elif how == "truncate":
                b = b[:rng.randrange(len(b))]
            elif how == "overwrite":
                i = rng.randrange(len(b))
                b[i:i + rng.randint(1, 64)] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 64)))
            elif how == "append":
                b += bytes(rng.randrange(256) for _ in range(rng.randint(1, 512)))
            elif how == "delete":
                i = rng.randrange(len(b))
                del b[i:i + rng.randint(1, 256)]
            else:
                i = rng.randrange(len(b))
                b[i:i + rng.randint(1, 256)] = bytes(min(256, len(b) - i))
            path.write_bytes(bytes(b))
            label = f"{kind}/bytes-{how}"
        else:  # structure-level: forged header and arrays, written as a valid .npz
            with np.load(bases[kind], allow_pickle=False) as z:
                arrays = {key: z[key] for key in z.files}
            header = json.loads(str(arrays.pop("__header__")))
            how = "header" if r < 0.7 else "arrays" if r < 0.9 else "both"
            for _ in range(rng.choice([1, 1, 1, 2, 3])):
                if how in ("header", "both"):
                    header = _mutate_header(rng, header)
                if how in ("arrays", "both"):
                    arrays = _mutate_arrays(rng, arrays)
            arrays.pop("__header__", None)
            try:
                np.savez_compressed(path, __header__=np.array(json.dumps(header)), **arrays)
            except (TypeError, ValueError):
                path.write_bytes(data)
            label = f"{kind}/{how}"
        cases.append((label, {"path": str(path), "show": f"{label} {path.name}"}))
    return cases


def _model_runner() -> Callable[[dict], str]:
    from synthloop.synthesizers import load_synthesizer, synthesizer_class

    for name, _ in MODEL_KINDS:  # import torch and every model now, not inside the first timed case
        synthesizer_class(name)

    def run(case: dict) -> str:
        model = load_synthesizer(case["path"])
        df = model.sample(50, seed=1)
        cond = model.sample(20, seed=2, conditions={"segment": "sme", "age": (30, 60)})  # the conditional paths
        return f"{len(df)} + {len(cond)} rows"

    return run


# -- part (c): journals --------------------------------------------------------------------------------
SPEC = """\
name: fuzzjournal
rows: 12
seed: 3
columns:
  - name: type
    sampler: {categorical: {credit: 0.5, debit: 0.5}}
  - name: amount
    sampler: {uniform: {min: 1, max: 100, decimals: 2}}
  - name: desc
    llm:
      prompt: "Merchant for a {{ type }} payment of {{ amount }} USD."
      max_retries: 1
  - name: profile
    llm:
      prompt: "Customer who bought: {{ desc }}"
      schema: {type: object, properties: {age: {type: integer, minimum: 18, maximum: 95}, segment: {enum: [retail, sme]}}}
"""


def _scripted_backend(interrupt_after: int | None = None):
    from synthloop.llm.base import BackendBase, LLMResult
    from synthloop.llm.testing import sample_from_schema

    class Scripted(BackendBase):
        """Answers from the request's JSON schema, seeded; no network."""

        name = model_id = "scripted"
        supports_constraints = True

        def __init__(self) -> None:
            self.calls = 0

        def complete_one(self, r):  # type: ignore[no-untyped-def]
            self.calls += 1
            if interrupt_after is not None and self.calls > interrupt_after:
                raise KeyboardInterrupt
            return LLMResult(json.dumps(sample_from_schema(r.schema, random.Random(r.seed))), elapsed=0.001)

    return Scripted()


def interrupted_journal(folder: Path) -> bytes:
    sys.path.insert(0, str(ROOT))
    from synthloop.generate.runner import PromptedGenerator
    from synthloop.generate.store import journal_path_for
    from synthloop.spec import loads_spec

    out = folder / "base.csv"
    try:
        PromptedGenerator(loads_spec(SPEC), backend=_scripted_backend(interrupt_after=14), cache_dir=False).generate(out=out)
    except Exception:  # noqa: BLE001 - the interruption is the point
        pass
    return journal_path_for(out).read_bytes()


def journal_cases(n: int, base: bytes, folder: Path) -> list[tuple[str, Any]]:
    rng = random.Random(SEED + 2)
    lines = base.split(b"\n")[:-1]
    cases = []
    for k in range(n):
        ls = list(lines)
        r = rng.random()
        if r < 0.25:  # line-level
            how = rng.choice(["delete", "duplicate", "swap", "torn-last", "garbage-middle", "empty", "no-header", "blank"])
            i = rng.randrange(1, len(ls)) if len(ls) > 1 else 0
            if how == "delete":
                del ls[i]
            elif how == "duplicate":
                ls.insert(i, ls[i])
            elif how == "swap":
                j = rng.randrange(len(ls))
                ls[i], ls[j] = ls[j], ls[i]
            elif how == "torn-last":
                ls[-1] = ls[-1][: rng.randrange(len(ls[-1]))]
            elif how == "garbage-middle":
                ls.insert(i, bytes(rng.randrange(256) for _ in range(rng.randint(1, 40))))
            elif how == "empty":
                ls = []
            elif how == "no-header":
                ls = ls[1:]
            else:
                ls.insert(i, b"")
            data = b"\n".join(ls) + (b"\n" if ls and how != "torn-last" else b"")
        elif r < 0.45:  # byte-level
            how = "bytes"
            b = bytearray(b"\n".join(ls) + b"\n")
            for _ in range(rng.randint(1, 8)):
                b[rng.randrange(len(b))] = rng.randrange(256)
            data = bytes(b)
        else:  # record-level: a field of one record set to a random value, or removed
            how = "record"
            i = rng.randrange(len(ls))
            try:
                rec = json.loads(ls[i])
                paths = _json_paths(rec)
                path = rng.choice(paths[1:] or paths)
                if rng.random() < 0.25 and path:
                    parent = _get(rec, path[:-1])
                    del parent[path[-1]]
                else:
                    value = rng.choice(JSON_VALUES + [10**18, -5, "3", 3.7, 99])
                    rec = _set_path(rec, path, lambda old: value)
                ls[i] = json.dumps(rec).encode()
            except (ValueError, KeyError, IndexError, TypeError):
                pass
            data = b"\n".join(ls) + b"\n"
        path = folder / f"j{k}.jsonl"
        path.write_bytes(data)
        cases.append((f"journal/{how}", {"journal": str(path), "show": f"{how} {path.name}"}))
    return cases


def _journal_runner() -> Callable[[dict], str]:
    from synthloop.generate.runner import PromptedGenerator
    from synthloop.generate.store import journal_path_for
    from synthloop.spec import loads_spec

    spec = loads_spec(SPEC)

    def run(case: dict) -> str:
        work = Path(tempfile.mkdtemp(prefix="fuzzj"))
        try:
            out = work / "o.csv"
            shutil.copy(case["journal"], journal_path_for(out))
            res = PromptedGenerator(spec, backend=_scripted_backend(), cache_dir=False).generate(out=out)
            return f"{len(res.data)} rows, resumed {res.summary.get('resumed_rows')}"
        finally:
            shutil.rmtree(work, ignore_errors=True)

    return run


RUNNERS: dict[str, Callable[[], Callable[[Any], str]]] = {
    "expressions": _expression_runner, "models": _model_runner, "journals": _journal_runner,
}


def main() -> None:
    import warnings

    warnings.filterwarnings("ignore")
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="a tenth of the cases (1,000 / 100 / 100)")
    ap.add_argument("--parts", default="expressions,models,journals", help="comma-separated subset of the parts (check42: only the 42 KB expression timing)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the generated cases (default 0)")
    ap.add_argument("--timeout", type=float, default=None,
                    help="seconds per case before it counts as a timeout (default 10; 5 with --quick)")
    args = ap.parse_args()
    globals()["SEED"] = args.seed
    parts = [p.strip() for p in args.parts.split(",") if p.strip()]
    if args.timeout is None:
        args.timeout = 5.0 if args.quick else 10.0
    scale = 10 if args.quick else 1
    sys.path.insert(0, str(ROOT))
    env = {"python": platform.python_version(), "machine": platform.machine(), "cpus": os.cpu_count(), "quick": args.quick}
    with tempfile.TemporaryDirectory(prefix="synthloop-fuzz-") as tmp:
        folder = Path(tmp)
        if "expressions" in parts:
            emit(tally("expressions", Harness("expressions", args.timeout),
                       expression_cases(FULL["expressions"] // scale), {"env": env}))
            emit(check_42kb(args.timeout))
        elif "check42" in parts:  # the 42 KB timing alone
            emit(check_42kb(args.timeout))
        if "models" in parts:
            bases = fit_base_models(folder)
            emit(tally("models", Harness("models", args.timeout),
                       model_cases(FULL["models"] // scale, bases, folder), {"env": env}))
        if "journals" in parts:
            base = interrupted_journal(folder)
            emit(tally("journals", Harness("journals", args.timeout),
                       journal_cases(FULL["journals"] // scale, base, folder), {"env": env}))


if __name__ == "__main__":
    main()
