"""CLI commands of prompted generation: `synthloop generate` and `synthloop prompt`."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

import typer
from rich.console import Console
from rich.text import Text


API_KEY_ENV_HELP = ("Environment variable holding the API key (overrides the spec's llm.api_key_env; a spec alone "
                    "may only name variables ending in _API_KEY).")
ALLOW_DIR_HELP = "A folder besides the spec's own that seed (few-shot) files may lie in (repeatable)."


def _apply_overrides(spec: Any, backend: Optional[str], base_url: Optional[str], model: Optional[str],
                     concurrency: Optional[int], seed: Optional[int], unconstrained: bool) -> Any:
    from pydantic import ValidationError

    from synthloop.spec.errors import SpecError
    from synthloop.spec.models import LLMSettings

    upd: dict[str, Any] = {}
    if backend is not None:
        if backend not in ("embedded", "openai", "hf"):
            raise SpecError(f"--backend {backend}: use embedded, openai or hf")
        upd["backend"] = backend
        if backend != spec.llm.backend and model is None:
            upd["model"] = None  # a model name of another backend means nothing here
    if base_url is not None:
        upd["base_url"] = base_url
    if model is not None:
        upd["model"] = model
    if concurrency is not None:
        if concurrency < 1:
            raise SpecError("--concurrency must be at least 1")
        upd["concurrency"] = concurrency
    if unconstrained:
        upd["constrained"] = False
    if upd:
        chosen = spec.llm._key_env_chosen
        try:
            spec.llm = LLMSettings.model_validate({**spec.llm.model_dump(), **upd})
        except ValidationError as exc:
            err = exc.errors()[0]
            raise SpecError(f"--{err['loc'][0]}: {err['msg']}") from None
        spec.llm._key_env_chosen = chosen
    if seed is not None:
        spec.seed = seed
    return spec


def register(app: typer.Typer) -> None:
    """Add `generate` and `prompt` to the synthloop app."""

    @app.command()
    def generate(
        spec_path: Path = typer.Argument(..., metavar="SPEC", help="YAML spec (see examples/prompted/)."),
        n: Optional[int] = typer.Option(None, "-n", "--rows", help="Rows to generate (default: the spec's rows)."),
        output: Optional[Path] = typer.Option(None, "-o", "--out", help="Output table (.csv, .parquet, .jsonl); default outputs/<name>.csv."),
        backend: Optional[str] = typer.Option(None, "--backend", help="embedded | openai | hf (overrides the spec)."),
        base_url: Optional[str] = typer.Option(None, "--base-url", help="OpenAI-compatible server, e.g. http://localhost:8000/v1."),
        model: Optional[str] = typer.Option(None, "--model", help="Model name (openai), .gguf path (embedded) or folder (hf)."),
        concurrency: Optional[int] = typer.Option(None, "--concurrency", help="Requests in flight at once (openai)."),
        seed: Optional[int] = typer.Option(None, "--seed", help="Overrides the spec's seed."),
        fresh: bool = typer.Option(False, "--fresh", help="Discard the journal of an interrupted run instead of resuming it."),
        no_cache: bool = typer.Option(False, "--no-cache", help="Do not read or write the response cache."),
        cache_dir: Optional[Path] = typer.Option(None, "--cache-dir", help="Response cache folder (default $SYNTHLOOP_CACHE_DIR or ~/.cache/synthloop)."),
        unconstrained: bool = typer.Option(False, "--unconstrained", help="Turn JSON-schema constrained decoding off (answers are still validated)."),
        keep_journal: bool = typer.Option(False, "--keep-journal", help="Keep the journal after a finished run."),
        api_key_env: Optional[str] = typer.Option(None, "--api-key-env", metavar="NAME", help=API_KEY_ENV_HELP),
        allow_dir: Optional[list[Path]] = typer.Option(None, "--allow-dir", metavar="DIR", help=ALLOW_DIR_HELP),
    ) -> None:
        """Generate a dataset from a YAML spec with samplers and an LLM; resumes an interrupted run."""
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

        from synthloop.generate.runner import GenerationInterrupted, PromptedGenerator, summary_path_for
        from synthloop.spec import load_spec

        console = Console(stderr=True)
        spec = _apply_overrides(load_spec(spec_path, allow_dir or (), api_key_env), backend, base_url, model, concurrency,
                                seed, unconstrained)
        out = output or Path("outputs") / f"{spec.name}.csv"
        gen = PromptedGenerator(spec, cache_dir=False if no_cache else cache_dir)
        progress = Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("{task.fields[rate]:.2f} rows/s"), TextColumn("valid {task.fields[valid]:.0%}"),
            TextColumn("retries {task.fields[retries]}"), TextColumn("failed {task.fields[failed]}"),
            TimeElapsedColumn(), TimeRemainingColumn(), console=console, disable=not console.is_terminal,
        )
        total = n if n is not None else spec.rows
        task = progress.add_task(spec.name, total=total, rate=0.0, valid=1.0, retries=0, failed=0)

        def on_progress(p: dict[str, Any]) -> None:
            desc = spec.name if p["phase"] in ("rows", "done") else f"{spec.name} ({p['phase']})"
            progress.update(task, completed=p["done"], total=p["total"], rate=p["rows_per_s"], valid=p["valid"],
                            retries=p["retries"], failed=p["failed"], description=desc)

        try:
            with progress:
                result = gen.generate(n, out, fresh=fresh, on_progress=on_progress, keep_journal=keep_journal,
                                      on_warning=lambda m: console.print(Text("warning: ", style="yellow") + Text(m), soft_wrap=True))
        except GenerationInterrupted as exc:
            console.print(f"[yellow]{exc}[/]", highlight=False)
            raise typer.Exit(130)
        s = result.summary
        v = s["validity"]
        console.print(
            f"wrote {s['rows_written']} of {s['rows_requested']} rows to {out} "
            f"({s['timing']['rows_per_second'] or 0:.2f} rows/s, first-try valid "
            f"{(v['valid_first_try'] if v['valid_first_try'] is not None else 1):.1%}, repairs {v['repairs']}, "
            f"resumed {s['resumed_rows']}, cache hits {s['cache']['hits']}); summary: {summary_path_for(out)}",
            highlight=False, soft_wrap=True,
        )
        if result.failed:
            console.print(f"[yellow]warning:[/] {len(result.failed)} rows failed validation after repairs and were left out "
                          f"(first: row {result.failed[0]['row']}, {result.failed[0]['column']}: {result.failed[0]['error']})",
                          highlight=False, soft_wrap=True)
        if s["targets"]["columns"] and not s["targets"]["met"]:
            console.print(f"[yellow]warning:[/] target shares missed by {s['targets']['max_abs_error']:.2%} "
                          f"(tolerance {s['targets']['tolerance']:.2%})", highlight=False)
        typer.echo(json.dumps(s, default=str))

    @app.command()
    def prompt(
        spec_path: Path = typer.Argument(..., metavar="SPEC", help="YAML spec."),
        row: int = typer.Option(0, "--row", help="Row index (0-based)."),
        column: Optional[list[str]] = typer.Option(None, "--column", help="Only this LLM column (repeatable)."),
        n: Optional[int] = typer.Option(None, "-n", "--rows", help="Rows of the run the row belongs to (quotas depend on it)."),
        as_json: bool = typer.Option(False, "--json", help="Print the messages and schema as JSON."),
        no_run: bool = typer.Option(False, "--no-run", help="Do not run the model for upstream LLM columns; show <column> placeholders."),
        backend: Optional[str] = typer.Option(None, "--backend"),
        base_url: Optional[str] = typer.Option(None, "--base-url"),
        model: Optional[str] = typer.Option(None, "--model"),
        cache_dir: Optional[Path] = typer.Option(None, "--cache-dir"),
        api_key_env: Optional[str] = typer.Option(None, "--api-key-env", metavar="NAME", help=API_KEY_ENV_HELP),
        allow_dir: Optional[list[Path]] = typer.Option(None, "--allow-dir", metavar="DIR", help=ALLOW_DIR_HELP),
    ) -> None:
        """Print the exact prompt (system, user, JSON schema, seed) sent for one row."""
        from synthloop.generate.runner import PromptedGenerator
        from synthloop.spec import load_spec

        spec = _apply_overrides(load_spec(spec_path, allow_dir or (), api_key_env), backend, base_url, model, None, None, False)
        gen = PromptedGenerator(spec, cache_dir=cache_dir)
        items = gen.prompts_for_row(row, n, column, run_upstream=not no_run)
        if as_json:
            typer.echo(json.dumps([
                {"column": c, "seed": sd, "messages": [{"role": r, "content": t} for r, t in p.messages], "schema": p.schema}
                for c, p, sd in items
            ], indent=2, ensure_ascii=False))
            return
        for c, p, sd in items:
            typer.echo(f"=== row {row}, column {c} (seed {sd}, constrained={spec.llm.constrained}) ===")
            for role, text in p.messages:
                typer.echo(f"--- {role} ---\n{text}")
            typer.echo(f"--- schema ---\n{json.dumps(p.schema, ensure_ascii=False)}\n")
