"""`synthloop demo`: learn the embedded demo table, sample, evaluate, report (what `make run` runs)."""
from __future__ import annotations

from pathlib import Path

import typer

from synthloop.commands._common import json_default, out, print_figures, progress


def register(app: typer.Typer) -> None:
    """Add `demo` to the app."""

    @app.command()
    def demo(
        out_dir: Path = typer.Option(Path("outputs/demo"), "--out", help="Folder for the model, synthetic data and report."),
        model: str = typer.Option("auto", "--model", "-m",
                                  help="Model to fit on the demo table (default: auto, the best model under a time "
                                       "budget scaled to the table; copula for a result in about a second)."),
        seed: int = typer.Option(0, "--seed"),
    ) -> None:
        """Learn the embedded demo table (5,000 rows of UCI Adult, CC BY 4.0), sample, evaluate, report."""
        import json
        import time

        from synthloop.data import demo_path
        from synthloop.evaluate.headline import evaluate_tables
        from synthloop.evaluate.suite import evaluate
        from synthloop.io import read_table, write_table, write_text
        from synthloop.schema import infer_schema
        from synthloop.synthesizers.factory import make_synthesizer

        df = read_table(demo_path())
        train, holdout = df.iloc[:4000].reset_index(drop=True), df.iloc[4000:].reset_index(drop=True)
        sch = infer_schema(df)
        with progress() as bar:
            synth = make_synthesizer(model, seed, shape=train.shape)
            budget = getattr(synth, "max_seconds", None)
            task = bar.add_task(f"fitting {synth.name}" + (f" (budget {budget:g} s)" if budget else ""), total=3)
            t0 = time.perf_counter()
            synth.fit(train, sch)
            fit_s = time.perf_counter() - t0
            model_path = synth.save(out_dir / "model.npz")
            bar.update(task, advance=1, description="sampling")
            syn = synth.sample(len(train), seed=seed)
            data_path = write_table(syn, out_dir / "synthetic.csv")
            bar.update(task, advance=1, description="evaluating")
            fig = evaluate_tables(train, syn, holdout, sch)
            report = evaluate(train, syn, holdout=holdout, schema=sch, seed=seed)
            fig["detection_auc"] = (report.data["fidelity"].get("detection") or {}).get("detection_auc")
            fig["model"] = synth.name
            fig["fit_seconds"] = round(fit_s, 2)
            json_path = write_text(json.dumps(fig, indent=2, default=json_default), out_dir / "report.json")
            html_path = write_text(report.to_html(), out_dir / "report.html")
            bar.update(task, advance=1, description="done")
        print_figures(fig)
        out.print(f"model:          {synth.name}, fitted in {fit_s:.1f} s" + (f" (time budget {budget:g} s)" if budget else ""))
        out.print(f"model file:     {model_path}")
        out.print(f"synthetic data: {data_path}")
        out.print(f"report (JSON):  {json_path}")
        out.print(f"report (HTML):  {html_path}")

