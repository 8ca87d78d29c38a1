"""`synthloop generate SPEC`: a dataset from a YAML spec with samplers and an LLM; resumes an interrupted run."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import typer

from synthloop.commands._common import RAY_ADDRESS_HELP, RAY_HELP, WORKERS_HELP, console, make_runner, styled
from synthloop.generate.overrides import ALLOW_DIR_HELP, API_KEY_ENV_HELP, LLM_MODEL_HELP, THREADS_HELP


def register(app: typer.Typer) -> None:
    """Add `generate` to the app."""

    @app.command()
    def generate(
        spec_path: Path = typer.Argument(..., metavar="SPEC", help="YAML spec (see examples/prompted/)."),
        n: Optional[int] = typer.Option(None, "-n", "--rows", help="Rows to generate (default: the spec's rows)."),
        output: Optional[Path] = typer.Option(None, "-o", "--out", help="Output table (.csv, .parquet, .jsonl); default outputs/<name>.csv."),
        backend: Optional[str] = typer.Option(None, "--backend", help="embedded | openai | hf | finetuned (overrides the spec)."),
        base_url: Optional[str] = typer.Option(None, "--base-url", help="OpenAI-compatible server, e.g. http://localhost:8000/v1."),
        model: Optional[str] = typer.Option(None, "--model", help="Model name (openai), .gguf path (embedded) or folder (hf)."),
        llm_model: Optional[str] = typer.Option(None, "--llm-model", help=LLM_MODEL_HELP),
        concurrency: Optional[int] = typer.Option(None, "--concurrency", help="Requests in flight at once (openai)."),
        threads: Optional[int] = typer.Option(None, "--threads", help=THREADS_HELP),
        seed: Optional[int] = typer.Option(None, "--seed", help="Overrides the spec's seed."),
        fresh: bool = typer.Option(False, "--fresh", help="Discard the journal of an interrupted run instead of resuming it."),
        no_cache: bool = typer.Option(False, "--no-cache", help="Do not read or write the response cache."),
        cache_dir: Optional[Path] = typer.Option(None, "--cache-dir", help="Response cache folder (default $SYNTHLOOP_CACHE_DIR or ~/.cache/synthloop)."),
        unconstrained: bool = typer.Option(False, "--unconstrained", help="Turn JSON-schema constrained decoding off (answers are still validated)."),
        keep_journal: bool = typer.Option(False, "--keep-journal", help="Keep the journal after a finished run."),
        api_key_env: Optional[str] = typer.Option(None, "--api-key-env", metavar="NAME", help=API_KEY_ENV_HELP),
        allow_dir: Optional[list[Path]] = typer.Option(None, "--allow-dir", metavar="DIR", help=ALLOW_DIR_HELP),
        ray: bool = typer.Option(False, "--ray", help=RAY_HELP + " Rows run on a pool of actors, one LLM backend each."),
        ray_address: Optional[str] = typer.Option(None, "--ray-address", metavar="ADDRESS", help=RAY_ADDRESS_HELP),
        workers: Optional[int] = typer.Option(None, "--workers", help=WORKERS_HELP),
        endpoint: Optional[list[str]] = typer.Option(None, "--endpoint", metavar="URL=CONCURRENCY",
                                                     help="With --ray: an OpenAI-compatible server and the requests it takes at "
                                                          "once, e.g. http://gpu1:8000/v1=16; repeat for several servers."),
    ) -> None:
        """Generate a dataset from a YAML spec with samplers and an LLM; resumes an interrupted run."""
        import json

        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

        from synthloop.generate.overrides import apply_overrides
        from synthloop.generate.runner import GenerationInterrupted, PromptedGenerator, summary_path_for
        from synthloop.spec import load_spec

        spec = apply_overrides(load_spec(spec_path, allow_dir or (), api_key_env), backend, base_url, model, concurrency,
                               seed, unconstrained, threads, llm_model)
        out = output or Path("outputs") / f"{spec.name}.csv"
        endpoints = [_parse_endpoint(e) for e in endpoint or []]
        runner = make_runner(ray or bool(endpoints), ray_address, workers)
        gen = PromptedGenerator(spec, cache_dir=False if no_cache else cache_dir, runner=runner, endpoints=endpoints or None)
        progress = Progress(
            TextColumn("{task.description}", style="bold", markup=False), BarColumn(), MofNCompleteColumn(),
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
            with runner, progress:
                result = gen.generate(n, out, fresh=fresh, on_progress=on_progress, keep_journal=keep_journal,
                                      on_warning=lambda m: console.print(styled(("warning:", "yellow"), " ", m)))
        except GenerationInterrupted as exc:
            console.print(str(exc), style="yellow", soft_wrap=True)
            raise typer.Exit(130)
        s = result.summary
        v = s["validity"]
        console.print(
            f"wrote {s['rows_written']} of {s['rows_requested']} rows to {out} "
            f"({s['timing']['rows_per_second'] or 0:.2f} rows/s, first-try valid "
            f"{(v['valid_first_try'] if v['valid_first_try'] is not None else 1):.1%}, repairs {v['repairs']}, "
            f"resumed {s['resumed_rows']}, cache hits {s['cache']['hits']}, requests {s['requests']['count']}, "
            f"tokens {s['requests']['tokens_in']} in / {s['requests']['tokens_out']} out); summary: {summary_path_for(out)}",
            soft_wrap=True, markup=False,
        )
        for col, a in s.get("agreement", {}).items():
            console.print(f"agreement of {col}: {a['written_rows_agreement'] if a['written_rows_agreement'] is not None else 1:.1%} "
                          f"of written rows (first try {a['agreed_first_try'] or 0:.1%}, {a['cells_failed']} cells failed every try)",
                          soft_wrap=True, markup=False)
        if result.failed:
            console.print(styled(("warning:", "yellow"), f" {len(result.failed)} rows failed validation after repairs and were left out "
                                 f"(first: row {result.failed[0]['row']}, {result.failed[0]['column']}: {result.failed[0]['error']})"),
                          soft_wrap=True, markup=False)
        if s["targets"]["columns"] and not s["targets"]["met"]:
            console.print(styled(("warning:", "yellow"), f" target shares missed by {s['targets']['max_abs_error']:.2%} "
                                 f"(tolerance {s['targets']['tolerance']:.2%})"))
        typer.echo(json.dumps(s, default=str))


def _parse_endpoint(text: str) -> tuple[str, int]:
    """`http://gpu1:8000/v1=16` -> ("http://gpu1:8000/v1", 16); without `=N` the concurrency is 4."""
    from synthloop.spec.errors import SpecError

    url, sep, conc = text.rpartition("=") if "=" in text.rsplit("/", 1)[-1] else (text, "", "")
    try:
        n = int(conc) if sep else 4
    except ValueError:
        n = 0
    if not url.startswith(("http://", "https://")) or n < 1:
        raise SpecError(f"--endpoint '{text}': expected URL=CONCURRENCY, e.g. http://localhost:8000/v1=8")
    return url, n
