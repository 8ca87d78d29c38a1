"""The studio's HTTP API and page: a thin FastAPI layer over the library, with no logic of its own.

Every file the API reads or writes lies inside the studio's folder (`root`); names from the page are
checked, never joined blindly. Bound to loopback, requests must carry a loopback Host header (no DNS
rebinding) and writes a same-origin Origin (no cross-site form posts); bound elsewhere, every API
call needs the token (header `X-Studio-Token`, or `?token=` for links and the report frame).
"""
from __future__ import annotations

import contextlib
import hmac
import json
import os
import re
import secrets
import threading
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml
from fastapi import Body, FastAPI, File, HTTPException, Request, UploadFile
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, PlainTextResponse
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool

from synthloop.errors import SynthloopError
from synthloop.spec.errors import SpecError
from synthloop.studio import specio
from synthloop.studio.jobs import KINDS, JobQueue

TABLE_EXTS = (".csv", ".tsv", ".parquet", ".jsonl", ".csv.gz", ".tsv.gz", ".jsonl.gz")
UPLOAD_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._ -]{0,120}$")
MAX_UPLOAD_BYTES = 512 * 1024 * 1024
LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1", "[::1]"}
SKIP_DIRS = {"runs", "__pycache__", "node_modules"}


class StudioError(SynthloopError):
    """A request the studio refuses (bad path, bad upload); the page shows the message at the field."""

    def __init__(self, message: str, field: str = "", status: int = 400) -> None:
        super().__init__(message)
        self.field, self.status = field, status


def static_dir() -> Path:
    return Path(str(resources.files("synthloop.studio") / "static"))


def is_loopback(host: str) -> bool:
    return host in LOOPBACK_HOSTS or host.startswith("127.")


def create_app(root: str | Path, token: str | None = None, host: str = "127.0.0.1", workers: int = 1,
               backend: Any = None) -> FastAPI:
    """The studio over folder `root`. `token`: required on every API call (must be set off loopback).
    `backend`: the LLM backend for on-demand LLM previews (default: built from the spec's `llm`)."""
    root = Path(root).resolve()
    root.mkdir(parents=True, exist_ok=True)
    if not is_loopback(host) and not token:
        raise StudioError(f"binding to {host} exposes the studio to the network; give a token (--token)")
    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> Any:
        yield
        app.state.close()

    app = FastAPI(title="synthloop studio", docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan)
    app.state.root, app.state.token, app.state.jobs = root, token, JobQueue(root, workers)
    threading.Thread(target=_warm_up, name="studio-warm-up", daemon=True).start()
    backends: dict[str, Any] = {}
    llm_lock = threading.Lock()

    # -- guard -----------------------------------------------------------------------------------
    @app.middleware("http")
    async def guard(request: Request, call_next: Any) -> Any:
        path = request.url.path
        if is_loopback(host):
            hostname = urlsplit("//" + (request.headers.get("host") or "")).hostname or ""
            if not is_loopback(hostname):
                return JSONResponse({"error": "the studio answers only to localhost (Host header refused)"}, 403)
        origin = request.headers.get("origin")
        if request.method not in ("GET", "HEAD") and origin and urlsplit(origin).netloc != request.headers.get("host"):
            return JSONResponse({"error": "cross-origin request refused"}, 403)
        if token and (path.startswith("/api/") or path.startswith("/runs/")):
            given = request.headers.get("x-studio-token") or request.query_params.get("token") or ""
            if not hmac.compare_digest(given.encode(), token.encode()):
                return JSONResponse({"error": "this studio needs its token: open the URL printed at start-up"}, 401)
        return await call_next(request)

    @app.exception_handler(SynthloopError)
    async def _user_error(request: Request, exc: SynthloopError) -> JSONResponse:
        field = getattr(exc, "field", "")
        if not field and isinstance(exc, SpecError):
            err = specio.error_of(exc)
            return JSONResponse({"error": err["message"], "field": err["path"]}, 400)
        return JSONResponse({"error": str(exc), "field": field}, getattr(exc, "status", 400))

    @app.exception_handler(HTTPException)
    async def _http_error(request: Request, exc: HTTPException) -> JSONResponse:
        return JSONResponse({"error": str(exc.detail), "field": ""}, exc.status_code)

    # -- paths -----------------------------------------------------------------------------------
    def safe_path(rel: Any, field: str = "path", exts: tuple[str, ...] | None = None, must_exist: bool = False) -> Path:
        """`rel` inside root, or a StudioError naming the field: no absolute paths, `..`, links out."""
        if not isinstance(rel, str) or not rel.strip() or "\x00" in rel or "\\" in rel:
            raise StudioError("give a file name inside the studio folder", field)
        p = Path(rel)
        if p.is_absolute() or ".." in p.parts or rel.startswith("~"):
            raise StudioError(f"{rel}: give a path inside the studio folder (no absolute paths, no '..')", field)
        real = (root / p).resolve()
        if not real.is_relative_to(root):
            raise StudioError(f"{rel}: resolves outside the studio folder", field)
        if exts and not rel.lower().endswith(exts):
            raise StudioError(f"{rel}: expected a file ending in {', '.join(exts)}", field)
        if must_exist and not real.is_file():
            raise StudioError(f"{rel}: no such file in the studio folder", field, 404)
        return real

    def rel(p: Path) -> str:
        return p.resolve().relative_to(root).as_posix()

    def run_dir(run_id: str) -> Path:
        if not re.fullmatch(r"[A-Za-z0-9_.-]+", run_id) or run_id.startswith("."):
            raise StudioError(f"{run_id}: not a run id", "run", 404)
        d = root / "runs" / run_id
        if not (d / "run.json").is_file():
            raise StudioError(f"{run_id}: no such run", "run", 404)
        return d

    # -- page --------------------------------------------------------------------------------------
    @app.get("/", response_class=HTMLResponse)
    def index() -> HTMLResponse:
        return HTMLResponse((static_dir() / "index.html").read_text(encoding="utf-8"),
                            headers={"Cache-Control": "no-store"})

    app.mount("/static", StaticFiles(directory=static_dir()), name="static")

    @app.get("/api/info")
    def info() -> dict[str, Any]:
        from synthloop.refine.targets import METRICS
        from synthloop.spec.models import DIST_KINDS, FAKER_PROVIDERS
        from synthloop.synthesizers.base import MODEL_MODULES

        return {"root": str(root), "kinds": list(DIST_KINDS), "faker": sorted(FAKER_PROVIDERS),
                "models": [*MODEL_MODULES, "auto"], "metrics": METRICS,
                "job_kinds": list(KINDS), "workers": app.state.jobs.workers}

    @app.get("/api/files")
    def files() -> dict[str, list[str]]:
        """Specs, targets, tables and models in the studio folder (three levels deep at most)."""
        out: dict[str, list[str]] = {"specs": [], "targets": [], "tables": [], "models": []}
        for p in sorted(_walk(root, 3)):
            name = p.name.lower()
            r = rel(p)
            if name.endswith((".yaml", ".yml")):
                try:
                    data = yaml.safe_load(p.read_text(encoding="utf-8"))
                except (yaml.YAMLError, OSError, UnicodeDecodeError):
                    continue
                (out["specs"] if isinstance(data, dict) and "columns" in data else out["targets"]).append(r)
            elif name.endswith(TABLE_EXTS):
                out["tables"].append(r)
            elif name.endswith(".npz"):
                out["models"].append(r)
        return out

    # -- prompted specs ------------------------------------------------------------------------------
    @app.get("/api/spec")
    def open_spec(path: str) -> dict[str, Any]:
        """A YAML spec as the page edits it (tagged JSON, see specio); the first preview validates it."""
        from synthloop.io import read_yaml

        p = safe_path(path, exts=(".yaml", ".yml"), must_exist=True)
        data, text = read_yaml(p, SpecError, "spec file")
        if not isinstance(data, dict):
            raise StudioError(f"{path}: not a spec (expected a mapping with 'name', 'rows' and 'columns')")
        return {"path": rel(p), "spec": specio.to_client(data), "yaml": text}

    def _spec_of(body: dict[str, Any]) -> tuple[dict[str, Any], Path]:
        data = specio.from_client(body.get("spec"))
        base = safe_path(body["path"], exts=(".yaml", ".yml")).parent if body.get("path") else root
        return data, base

    @app.post("/api/spec/preview")
    def preview(body: dict[str, Any] = Body(...)) -> dict[str, Any]:
        """Validate, then 10 rows (LLM columns only with `llm: true`), histograms, the DAG and the YAML."""
        data, base = _spec_of(body)
        rows = max(1, min(int(body.get("rows") or 10), 100))
        try:
            yaml_text = specio.dump_yaml(data)
        except yaml.YAMLError as exc:
            return {"ok": False, "error": {"path": "", "message": f"cannot write as YAML: {exc}"}}
        try:
            spec = specio.validate(data, base)
        except SpecError as exc:
            return {"ok": False, "error": specio.error_of(exc), "yaml": yaml_text}
        out: dict[str, Any] = {"ok": True, "yaml": yaml_text, "dag": specio.dag(spec), "hist": specio.histograms(spec)}
        if body.get("llm"):
            with llm_lock:
                be = backend
                if be is None:
                    from synthloop.llm import make_backend

                    key = spec.llm.model_dump_json()
                    if key not in backends:
                        backends[key] = make_backend(spec.llm)
                    be = backends[key]
                out.update(specio.preview(spec, rows, backend=be, with_llm=True, cache_dir=root / ".studio" / "cache"))
        else:
            out.update(specio.preview(spec, rows))
        return out

    @app.post("/api/spec/save")
    def save_spec(body: dict[str, Any] = Body(...)) -> dict[str, Any]:
        """Write the YAML `synthloop generate` runs; an invalid spec is refused and nothing is written."""
        from synthloop.io import write_text

        p = safe_path(body.get("path"), exts=(".yaml", ".yml"))
        data, base = _spec_of(body)
        specio.validate(data, base)
        text = specio.dump_yaml(data)
        write_text(text, p)
        return {"path": rel(p), "yaml": text}

    # -- tables ------------------------------------------------------------------------------------
    def _schema_view(p: Path) -> dict[str, Any]:
        import warnings

        from synthloop.io import read_table
        from synthloop.schema import infer_schema

        df = read_table(p)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            sch = infer_schema(df)
        return {"path": rel(p), "rows": int(len(df)), "columns": json.loads(sch.to_json())["columns"],
                "notes": [str(w.message) for w in caught][:20],
                "head": specio.records(df.head(10))}

    @app.post("/api/tables")
    async def upload(file: UploadFile = File(...)) -> dict[str, Any]:
        """Store an uploaded CSV/Parquet table under uploads/ and return its inferred schema."""
        name = file.filename or ""
        if not UPLOAD_NAME.match(name) or Path(name).name != name or ".." in name:
            raise StudioError(f"{name!r}: not an acceptable file name (letters, digits, '.', '_', '-' and spaces; "
                              "no folders)", "file")
        if not name.lower().endswith(TABLE_EXTS):
            raise StudioError(f"{name}: not a table file; upload .csv, .tsv, .parquet or .jsonl", "file")
        dest = safe_path(f"uploads/{name}")
        dest.parent.mkdir(parents=True, exist_ok=True)
        # written beside the destination under a hidden name that keeps the extension (the reader goes by
        # it), read back, and only then renamed into place: a refused upload leaves nothing behind
        tmp = dest.with_name(f".incoming-{secrets.token_hex(6)}-{name}")
        size = 0
        try:
            with open(tmp, "wb") as fh:
                while chunk := await file.read(1 << 20):
                    size += len(chunk)
                    if size > MAX_UPLOAD_BYTES:
                        raise StudioError(f"{name}: larger than {MAX_UPLOAD_BYTES >> 20} MiB", "file", 413)
                    fh.write(chunk)
            try:  # reading and inferring is CPU work: off the event loop, so other requests go on
                view = await run_in_threadpool(_schema_view, tmp)
            except SynthloopError as exc:
                raise StudioError(str(exc).replace(str(tmp), name), "file") from None
            os.replace(tmp, dest)
        finally:
            tmp.unlink(missing_ok=True)
        view["path"] = rel(dest)
        return view

    @app.get("/api/tables/schema")
    def table_schema(path: str) -> dict[str, Any]:
        return _schema_view(safe_path(path, exts=TABLE_EXTS, must_exist=True))

    # -- targets -------------------------------------------------------------------------------------
    @app.get("/api/targets")
    def open_targets(path: str) -> dict[str, Any]:
        from synthloop.io import read_yaml
        from synthloop.refine.targets import TargetsError

        p = safe_path(path, exts=(".yaml", ".yml"), must_exist=True)
        data, _ = read_yaml(p, TargetsError, "targets file")
        return {"path": rel(p), "targets": specio.to_client(data or {})}

    @app.post("/api/targets/save")
    def save_targets(body: dict[str, Any] = Body(...)) -> dict[str, Any]:
        """Validate a targets mapping as `refine` will read it and write it as YAML."""
        from synthloop.io import write_text
        from synthloop.refine.targets import parse_targets

        p = safe_path(body.get("path"), exts=(".yaml", ".yml"))
        data = specio.from_client(body.get("targets") or {})
        parse_targets(data, source="targets")
        text = specio.dump_yaml(data)
        write_text(text, p)
        return {"path": rel(p), "yaml": text}

    # -- jobs --------------------------------------------------------------------------------------
    @app.post("/api/jobs")
    def submit(body: dict[str, Any] = Body(...)) -> dict[str, Any]:
        """Queue a fit, sample, generate or refine job; paths are checked here, before it waits."""
        kind = body.get("kind")
        p = dict(body.get("params") or {})
        if kind == "fit":
            safe_path(p.get("table"), "table", TABLE_EXTS, must_exist=True)
            p.setdefault("out", f"models/{Path(p['table']).name.split('.')[0]}-{p.get('model', 'copula')}.npz")
            safe_path(p["out"], "out", (".npz",))
            if p.get("budget_s") not in (None, "") and not (isinstance(p["budget_s"], (int, float)) and p["budget_s"] > 0):
                raise StudioError("the time budget is a number of seconds > 0", "budget_s")
        elif kind == "sample":
            safe_path(p.get("model"), "model", (".npz",), must_exist=True)
            if p.get("table"):
                safe_path(p["table"], "table", TABLE_EXTS, must_exist=True)
            if not isinstance(p.get("rows", 100), int) or not 1 <= p.get("rows", 100) <= 1_000_000:
                raise StudioError("rows: a whole number between 1 and 1,000,000", "rows")
        elif kind == "generate":
            safe_path(p.get("spec"), "spec", (".yaml", ".yml"), must_exist=True)
        elif kind == "refine":
            safe_path(p.get("source"), "source", (".yaml", ".yml", *TABLE_EXTS), must_exist=True)
            safe_path(p.get("targets"), "targets", (".yaml", ".yml"), must_exist=True)
        else:
            raise StudioError(f"unknown job kind {kind!r}; use one of {', '.join(KINDS)}", "kind")
        return app.state.jobs.submit(kind, p).view()

    @app.get("/api/jobs")
    def jobs() -> list[dict[str, Any]]:
        return [j.view(since=len(j.events)) for j in app.state.jobs.list()]

    @app.get("/api/jobs/{job_id}")
    def job(job_id: str, since: int = 0) -> dict[str, Any]:
        j = app.state.jobs.get(job_id)
        if j is None:
            raise StudioError(f"{job_id}: no such job", "job", 404)
        return j.view(since=max(0, since))

    @app.post("/api/jobs/{job_id}/cancel")
    def cancel(job_id: str) -> dict[str, Any]:
        j = app.state.jobs.cancel(job_id)
        if j is None:
            raise StudioError(f"{job_id}: no such job", "job", 404)
        return j.view(since=len(j.events))

    # -- runs --------------------------------------------------------------------------------------
    @app.get("/api/runs")
    def runs() -> list[dict[str, Any]]:
        out = []
        for f in (root / "runs").glob("*/run.json"):
            try:
                out.append(json.loads(f.read_text(encoding="utf-8")))
            except (OSError, ValueError):
                continue
        return sorted(out, key=lambda r: r.get("created", 0), reverse=True)

    @app.get("/api/runs/{run_id}")
    def run(run_id: str) -> dict[str, Any]:
        return json.loads((run_dir(run_id) / "run.json").read_text(encoding="utf-8"))

    @app.get("/runs/{run_id}/report")
    def report(run_id: str) -> Any:
        d = run_dir(run_id)
        info = json.loads((d / "run.json").read_text(encoding="utf-8"))
        name = info.get("report") or "report.html"
        p = d / Path(name).name
        if not p.is_file():
            return HTMLResponse("<p style='font-family:sans-serif'>This run has no HTML report.</p>")
        return FileResponse(p, media_type="text/html")

    @app.get("/api/runs/{run_id}/download")
    def download(run_id: str, format: str = "csv") -> FileResponse:
        if format not in ("csv", "parquet"):
            raise StudioError("format: csv or parquet", "format")
        p = run_dir(run_id) / f"data.{format}"
        if not p.is_file():
            raise StudioError(f"{run_id} has no {format} output", "format", 404)
        media = "text/csv" if format == "csv" else "application/vnd.apache.parquet"
        return FileResponse(p, media_type=media, filename=f"{run_id}.{format}")

    @app.get("/api/runs/{run_id}/events")
    def run_log(run_id: str) -> PlainTextResponse:
        p = run_dir(run_id) / "data.log.jsonl"
        return PlainTextResponse(p.read_text(encoding="utf-8") if p.is_file() else "")

    def close() -> None:
        """Stop running jobs and close LLM backends (the server calls it on shutdown)."""
        app.state.jobs.close()
        for be in backends.values():
            try:
                be.close()
            except Exception:  # noqa: BLE001 - closing on the way out
                pass

    app.state.close = close
    return app


def _warm_up() -> None:
    """Import what the first preview needs (Faker, the generator) before the first click asks for it."""
    try:
        spec = specio.validate({"name": "warm", "columns": [{"name": "a", "sampler": {"faker": {"provider": "name"}}},
                                                             {"name": "b", "sampler": {"normal": {"mean": 0, "std": 1}}}]}, Path("."))
        specio.preview(spec, rows=2)
        specio.histograms(spec)
    except Exception:  # noqa: BLE001 - a warm-up only; the real request reports its own errors
        pass


def _walk(root: Path, depth: int) -> list[Path]:
    out: list[Path] = []
    try:
        entries = list(root.iterdir())
    except OSError:
        return out
    for p in entries:
        if p.name.startswith(".") or p.is_symlink():
            continue
        if p.is_dir():
            if depth > 1 and p.name not in SKIP_DIRS:
                out.extend(_walk(p, depth - 1))
        elif p.is_file():
            out.append(p)
        if len(out) > 2000:
            break
    return out
