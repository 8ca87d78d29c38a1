"""`synthloop prompt SPEC`: print the exact prompt (system, user, JSON schema, seed) sent for one row."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from synthloop.generate.overrides import ALLOW_DIR_HELP, API_KEY_ENV_HELP, LLM_MODEL_HELP


def register(app: typer.Typer) -> None:
    """Add `prompt` to the app."""

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
        llm_model: Optional[str] = typer.Option(None, "--llm-model", help=LLM_MODEL_HELP),
        cache_dir: Optional[Path] = typer.Option(None, "--cache-dir"),
        api_key_env: Optional[str] = typer.Option(None, "--api-key-env", metavar="NAME", help=API_KEY_ENV_HELP),
        allow_dir: Optional[list[Path]] = typer.Option(None, "--allow-dir", metavar="DIR", help=ALLOW_DIR_HELP),
    ) -> None:
        """Print the exact prompt (system, user, JSON schema, seed) sent for one row."""
        import json

        from synthloop.generate.overrides import apply_overrides
        from synthloop.generate.runner import PromptedGenerator
        from synthloop.spec import load_spec

        spec = apply_overrides(load_spec(spec_path, allow_dir or (), api_key_env), backend, base_url, model, None, None, False,
                               llm_model=llm_model)
        gen = PromptedGenerator(spec, cache_dir=cache_dir)
        items = gen.prompts_for_row(row, n, column, run_upstream=not no_run)
        if as_json:
            typer.echo(json.dumps([
                {"column": c, "seed": sd, "messages": [{"role": r, "content": t} for r, t in p.messages], "schema": p.schema,
                 "start": p.start}
                for c, p, sd in items
            ], indent=2, ensure_ascii=False))
            return
        for c, p, sd in items:
            typer.echo(f"=== row {row}, column {c} (seed {sd}, constrained={spec.llm.constrained}) ===")
            for role, text in p.messages:
                typer.echo(f"--- {role} ---\n{text}")
            if p.start:
                typer.echo(f"--- the text starts with (written, not generated) ---\n{p.start}")
            typer.echo(f"--- schema ---\n{json.dumps(p.schema, ensure_ascii=False)}\n")
