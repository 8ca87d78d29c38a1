"""Databases: synthloop's RelationalSynthesizer vs SDV 2.x HMASynthesizer (whole database) and
PARSynthesizer (berka's per-account transaction sequences), same machine, same run.

    python benchmarks/bench_relational.py                 # berka + nycflights13
    python benchmarks/bench_relational.py --quick         # a small check that everything runs

Every model runs in its own process (peak memory = that process's max RSS) under a time limit; an SDV
model that does not finish within it is retried on random subsets (sdv.utils.get_random_subset) of
decreasing size, and the row says which subset it finished on. Every synthetic database is scored
against the real rows it was trained on with SDMetrics' MultiTableQualityReport (score and its four
properties), referential integrity and the per-entity sequence statistics of synthloop.evaluate.multitable.
One JSON line per model and dataset, then one comparison line per dataset.
"""
from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import pickle
import resource
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
DATA = REPO.parent / "shared" / "data"
if not DATA.is_dir():
    DATA = Path("/work/shared/data")


WEATHER_KEY = ["origin", "year", "month", "day", "hour"]


def load(name: str, composite: bool = True):
    from synthloop.schema.metadata import Relationship, detect_metadata, read_tables, table_files

    folder = DATA / name
    tables = read_tables(folder)
    if name == "nycflights13" and composite:  # 3 of 26,115 weather rows repeat their (origin, hour): the first kept
        tables["weather"] = tables["weather"].drop_duplicates(WEATHER_KEY).reset_index(drop=True)
    meta = detect_metadata(tables, table_files(folder))
    if name == "berka_financial":  # all eight tables; trans is the history of each account
        meta.tables["trans"].sequence_key = "account_id"
        meta.tables["trans"].order_by = "date"
    if name == "nycflights13" and composite:  # 157 of 32,735 flights have no weather row for their hour: left out
        from synthloop.schema.metadata import key_series, lookup

        f = tables["flights"]
        tables["flights"] = f[lookup(key_series(tables["weather"], WEATHER_KEY), key_series(f, WEATHER_KEY)) >= 0].reset_index(drop=True)
    if name == "nycflights13" and composite and not any(r.composite for r in meta.relationships):
        # flights -> weather on the composite key (detected once the repeated rows are gone; set here if not)
        meta.tables["weather"].primary_key = WEATHER_KEY
        meta.relationships.append(Relationship(parent="weather", parent_key=WEATHER_KEY, child="flights",
                                               child_key=WEATHER_KEY))
    meta.check()
    tables = meta.orphans_to_null(tables)
    for r in meta.relationships:
        if not r.composite:
            r.on_orphans = "error" if not tables[r.child][r.child_key].isna().any() else "null"
    return tables, meta


def _child(kind: str, tables, meta_dict, params, out_path, q) -> None:
    warnings.simplefilter("ignore")
    try:
        import torch

        torch.set_num_threads(params.get("threads", 1))  # a shared 2-core machine: one thread per model
        t0 = time.perf_counter()
        c0 = time.process_time()  # CPU seconds: on a shared machine the fair figure (wall time follows the load)
        if kind == "synthloop":
            from synthloop.schema.metadata import Metadata
            from synthloop.synthesizers.relational import RelationalSynthesizer

            meta = Metadata.from_dict(meta_dict)
            model = RelationalSynthesizer(max_seconds=params["seconds"], epochs=params.get("epochs", 24), random_state=0,
                                          privacy_k=params.get("privacy_k", 5))
            model.fit(tables, meta)
            fit_s, fit_cpu = time.perf_counter() - t0, time.process_time() - c0
            t1 = time.perf_counter()
            synth = model.sample(scale=1.0, seed=1)
        elif kind == "sdv_hma":
            from sdv.metadata import Metadata as SdvMeta
            from sdv.multi_table import HMASynthesizer

            sm = SdvMeta.load_from_dict(meta_dict)
            model = HMASynthesizer(sm, verbose=False)
            model.fit(tables)
            fit_s, fit_cpu = time.perf_counter() - t0, time.process_time() - c0
            t1 = time.perf_counter()
            synth = model.sample_scale(scale=1.0)
        else:  # sdv_par: one sequence table
            from sdv.metadata import Metadata as SdvMeta
            from sdv.sequential import PARSynthesizer

            sm = SdvMeta.load_from_dict(meta_dict)
            model = PARSynthesizer(sm, epochs=params.get("epochs", 128), verbose=False)
            (name, df), = tables.items()
            model.fit({name: df})  # SDV 2: a dict of one table
            fit_s, fit_cpu = time.perf_counter() - t0, time.process_time() - c0
            t1 = time.perf_counter()
            got = model.sample_sequences(num_sequences=params["sequences"])
            synth = got if isinstance(got, dict) else {name: got}
        sample_s = time.perf_counter() - t1
        with open(out_path, "wb") as fh:  # this run's own temp file, read back by the parent
            pickle.dump(synth, fh)
        q.put({"ok": True, "fit_s": fit_s, "sample_s": sample_s, "fit_cpu_s": fit_cpu,
               "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024})
    except Exception as exc:  # noqa: BLE001 - reported in the row
        q.put({"ok": False, "error": f"{type(exc).__name__}: {str(exc)[:300]}"})


def run_model(kind, tables, meta_dict, params, timeout):
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "synth.pkl"
        p = ctx.Process(target=_child, args=(kind, tables, meta_dict, params, out, q))
        t0 = time.perf_counter()
        p.start()
        p.join(timeout)
        if p.is_alive():
            p.kill()
            p.join()
            return {"ok": False, "error": f"did not finish within {timeout:.0f} s", "timed_out": True,
                    "wall_s": time.perf_counter() - t0}
        res = q.get() if not q.empty() else {"ok": False, "error": f"process died (exit {p.exitcode})"}
        if res.get("ok"):
            with open(out, "rb") as fh:
                res["synth"] = pickle.load(fh)
        return res


def sdv_dict(meta, tables, sequences: bool):
    """SDV metadata; composite keys as their single-column surrogates (SDV has none): pass the tables
    through `meta.to_surrogate` too (`sdv_tables`)."""
    sur = meta.surrogate()
    tables = meta.to_surrogate(tables)
    schemas = {t: sur.table_schema(t, tables[t]) for t in sur.tables}
    d = sur.to_sdv_dict(schemas)
    if not sequences:
        for t in d["tables"].values():
            t.pop("sequence_key", None)
            t.pop("sequence_index", None)
    return d


def score(real, synth, meta, tables_meta_dict):
    """`synth` in the user's form (composite keys as columns); SDMetrics judges both on surrogate keys."""
    from sdmetrics.reports.multi_table import QualityReport

    from synthloop.evaluate.multitable import multi_table_quality, referential_integrity, sequence_statistics

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rep = QualityReport()
        rep.generate(meta.to_surrogate(real), meta.to_surrogate(synth), tables_meta_dict, verbose=False)
    props = dict(zip(rep.get_properties()["Property"], rep.get_properties()["Score"]))
    ours = multi_table_quality(real, synth, meta)
    integ = referential_integrity(synth, meta)
    seq = sequence_statistics(real, synth, meta)
    return {"sdmetrics_quality": float(rep.get_score()), "column_shapes": float(props["Column Shapes"]),
            "column_pair_trends": float(props["Column Pair Trends"]), "cardinality": float(props["Cardinality"]),
            "intertable_trends": float(props["Intertable Trends"]),
            "synthloop_quality": ours["quality_score"], "synthloop_vs_sdmetrics_diff": abs(ours["quality_score"] - float(rep.get_score())),
            "referential_integrity": min(integ.values()) if integ else 1.0,
            "sequences": {t: {k: round(v, 4) for k, v in s.items()} for t, s in seq.items()}}


def subset(tables, meta, main: str, rows: int, seed: int = 0):
    """Random subset with integrity (SDV's own helper), keeping `rows` rows of `main`."""
    from sdv.metadata import Metadata as SdvMeta
    from sdv.utils import get_random_subset

    sm = SdvMeta.load_from_dict(sdv_dict(meta, tables, sequences=False))
    np.random.seed(seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sub = get_random_subset(meta.to_surrogate(tables), sm, main_table_name=main, num_rows=rows, verbose=False)
    sub = meta.from_surrogate({t: sub[t].reset_index(drop=True) for t in meta.tables}, repair=False)
    return {t: sub[t][list(tables[t].columns)] for t in meta.tables}


def hma_refuses(meta_dict) -> str | None:
    """HMA's own schema check (SDV 2 community edition), without fitting."""
    from sdv.metadata import Metadata as SdvMeta
    from sdv.multi_table import HMASynthesizer

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            HMASynthesizer(SdvMeta.load_from_dict(meta_dict))
    except Exception as exc:  # noqa: BLE001 - the refusal is the finding
        return f"HMA refuses the schema: {str(exc).splitlines()[0][:200]}"
    return None


def simplified(tables, meta_dict):
    from sdv.metadata import Metadata as SdvMeta
    from sdv.utils import simplify_schema

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        d2, m2 = simplify_schema(tables, SdvMeta.load_from_dict(meta_dict), verbose=False)
    md = m2.to_dict()
    return {t: d2[t].reset_index(drop=True) for t in md["tables"]}, md


def subset_sdv(data, meta_dict, main, rows, seed=0):
    from sdv.metadata import Metadata as SdvMeta
    from sdv.utils import get_random_subset

    np.random.seed(seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sub = get_random_subset(data, SdvMeta.load_from_dict(meta_dict), main_table_name=main, num_rows=rows, verbose=False)
    return {t: sub[t].reset_index(drop=True) for t in data}


def restrict(meta, data):
    """Our metadata for a smaller database: its tables and the relationships among them; a sequence
    whose order column was dropped becomes a plain child table."""
    from synthloop.schema.metadata import Metadata

    tables = {}
    for t in data:
        tm = meta.tables[t].model_copy(update={"file": None})
        if tm.order_by and tm.order_by not in data[t].columns:
            tm = tm.model_copy(update={"sequence_key": None, "order_by": None})
        tables[t] = tm
    rels = [r for r in meta.relationships if r.parent in data and r.child in data and
            all(c in data[r.child].columns for c in r.child_cols)]
    return Metadata(tables=tables, relationships=rels).check()


def emit(row):
    if "session" in row:  # the load when the row was printed: timings on a shared machine are distorted by it
        import os

        row["load_avg_1m"] = round(os.getloadavg()[0], 2)
    print(json.dumps(row, default=lambda o: float(o) if isinstance(o, (np.floating, np.integer)) else str(o)), flush=True)
    return row


def bench_dataset(name, args, rows_out):
    from synthloop.schema.metadata import Metadata

    tables, meta = load(name, composite=not args.no_composite)
    main = {"berka_financial": "account", "nycflights13": "flights"}[name]
    if args.quick:
        tables = subset(tables, meta, main, 300 if name == "berka_financial" else 2000)
    n_rows = {t: len(v) for t, v in tables.items()}
    base = {"bench": "relational", "dataset": name, "tables": len(tables), "rows": sum(n_rows.values()), "seed": 0}
    if args.session is not None:
        import os

        base["session"] = int(args.session) if str(args.session).isdigit() else args.session
        base["load_avg_1m"] = round(os.getloadavg()[0], 2)
    if args.note:
        base["note"] = args.note
    results = {}
    # ours, on the whole database
    skip = "synthloop" not in args.models or args.no_ours_whole
    res = {"ok": False, "error": "not run (--models / --no-ours-whole)"} if skip else run_model(
        "synthloop", tables, meta.to_dict(), {"seconds": args.our_seconds, "epochs": args.epochs}, args.our_timeout)
    row = {**base, "model": "synthloop", "subset": "whole", "finished": res["ok"]}
    if res["ok"]:
        row.update(fit_s=round(res["fit_s"], 1), fit_cpu_s=round(res["fit_cpu_s"], 1), sample_s=round(res["sample_s"], 1), peak_mb=round(res["peak_mb"]))
        row.update(score(tables, res["synth"], meta, sdv_dict(meta, tables, False)))
    else:
        row["error"] = res["error"]
    results["synthloop"] = row
    if not args.no_ours_whole:
        emit(row)
        rows_out.append(row)
    # SDV HMA: whole database; if HMA refuses the schema (SDV 2 community HMA takes at most 5 tables and
    # depth 2), SDV's own simplify_schema; then smaller random subsets until one finishes
    data, hma_meta, label = tables, sdv_dict(meta, tables, False), "whole"
    if "sdv_hma" not in args.models:
        fractions_hma = []
    else:
        fractions_hma = ([] if args.no_hma_whole else [1.0]) + [float(f) for f in args.hma_subsets.split(",") if f]
    hma_dict = hma_meta
    complexity = hma_refuses(hma_meta) if fractions_hma else None
    keep = []
    if complexity:
        row = {**base, "model": "sdv_hma", "subset": "whole", "finished": False, "error": complexity}
        emit(row)
        rows_out.append(row)
        keep = [t for t in args.hma_tables.split(",") if t in tables] if name == "berka_financial" else []
        if keep:  # the largest part of the schema HMA takes: 5 tables, depth 2, every column
            data = {t: tables[t] for t in keep}
            hma_dict = sdv_dict(restrict(meta, data), data, False)
            label = f"{len(keep)} of {len(tables)} tables ({', '.join(keep)}), all columns"
        elif meta.has_composite_keys():  # e.g. airports -> weather -> flights: depth 3; compare with --no-composite
            fractions_hma = []
        else:
            data, hma_dict = simplified(tables, hma_meta)
            label = f"sdv simplify_schema: {len(data)} tables ({', '.join(f'{t} {v.shape[1]} cols' for t, v in data.items())})"
    data_meta = restrict(meta, data) if not complexity or keep else None
    for frac in fractions_hma:
        # SDV sees composite keys as surrogate columns (`Metadata.to_surrogate`); ours and the scores the user's form
        data_s = data_meta.to_surrogate(data) if data_meta is not None else data
        part_s = data_s if frac >= 1.0 else subset_sdv(data_s, hma_dict, main, max(10, int(len(data_s[main]) * frac)))
        part = data_meta.from_surrogate(part_s, repair=False) if data_meta is not None else part_s
        part = {t: part[t][[c for c in data[t].columns if c in part[t].columns]] for t in part}
        limit = args.hma_whole_timeout if frac >= 1.0 else args.sdv_timeout
        res = run_model("sdv_hma", part_s, hma_dict, {}, limit)
        sub_label = label if frac >= 1.0 else f"{label}; {frac:g} of {main} ({len(part[main])} rows) with related rows"
        row = {**base, "model": "sdv_hma", "subset": sub_label, "tables": len(part),
               "rows": sum(len(v) for v in part.values()), "finished": res["ok"], "time_limit_s": limit}
        sub_meta = restrict(meta, part)
        if res["ok"]:
            row.update(fit_s=round(res["fit_s"], 1), fit_cpu_s=round(res["fit_cpu_s"], 1), sample_s=round(res["sample_s"], 1), peak_mb=round(res["peak_mb"]))
            row.update(score(part, sub_meta.from_surrogate(res["synth"]), sub_meta, hma_dict))
        else:
            row["error"] = res["error"]
        emit(row)
        rows_out.append(row)
        if res["ok"]:
            results["sdv_hma"] = row
            if (frac < 1.0 or data is not tables) and "synthloop" in args.models:  # ours on exactly the data HMA learned
                def ours_on_subset(label: str, key: str, **extra: object) -> None:
                    """Our model on exactly the data HMA learned (with `extra` synthesizer settings)."""
                    res2 = run_model("synthloop", part, sub_meta.to_dict(),
                                     {"seconds": args.our_seconds, "epochs": args.epochs, **extra}, args.our_timeout)
                    r2 = {**base, "model": label, "subset": sub_label, "tables": len(part), "rows": row["rows"],
                          "finished": res2["ok"], **extra}
                    if res2["ok"]:
                        r2.update(fit_s=round(res2["fit_s"], 1), fit_cpu_s=round(res2["fit_cpu_s"], 1),
                                  sample_s=round(res2["sample_s"], 1), peak_mb=round(res2["peak_mb"]))
                        r2.update(score(part, res2["synth"], sub_meta, hma_dict))
                        results[key] = r2
                    else:
                        r2["error"] = res2["error"]
                    emit(r2)
                    rows_out.append(r2)

                ours_on_subset("synthloop", "synthloop_same_subset")
                if args.also_no_guard:  # HMA has no privacy guard: ours without one too, same data
                    ours_on_subset("synthloop_privacy_k0", "synthloop_k0_same_subset", privacy_k=0)
            break
    # SDV PAR on the sequence table alone (berka: trans per account)
    seq_tables = [t for t, m in meta.tables.items() if m.sequence_key]
    for t in (seq_tables if "sdv_par" in args.models else []):
        tm = meta.tables[t]
        df = tables[t]
        ents = df[tm.sequence_key].dropna().unique()
        rng = np.random.default_rng(0)
        for n_seq in [int(x) for x in args.par_sequences.split(",")]:
            keep = ents if n_seq >= len(ents) else rng.choice(ents, n_seq, replace=False)
            part = df[df[tm.sequence_key].isin(keep)].reset_index(drop=True)
            one = Metadata(tables={t: tm.model_copy(update={"file": None})}, relationships=[])
            md = sdv_dict(one.model_copy(update={"tables": {t: tm.model_copy(update={"sequence_key": None, "order_by": None})}}),
                          {t: part}, False)
            md["tables"][t]["columns"][tm.sequence_key] = {"sdtype": "id"}
            md["tables"][t]["sequence_key"] = tm.sequence_key
            md["tables"][t]["sequence_index"] = tm.order_by
            md["tables"][t].pop("primary_key", None)
            md["tables"][t]["columns"].pop(tm.primary_key, None)
            part_in = part.drop(columns=[tm.primary_key]) if tm.primary_key else part
            res = run_model("sdv_par", {t: part_in}, md, {"sequences": len(keep), "epochs": args.par_epochs}, args.par_timeout)
            row = {**base, "model": "sdv_par", "table": t, "subset": "whole" if len(keep) == len(ents) else f"{len(keep)} of {len(ents)} sequences",
                   "rows": len(part), "finished": res["ok"], "time_limit_s": args.par_timeout, "par_epochs": args.par_epochs}
            if res["ok"]:
                from synthloop.evaluate.multitable import sequence_statistics

                synth = res["synth"][t]
                if tm.primary_key:
                    synth.insert(0, tm.primary_key, np.arange(len(synth)))
                seqmeta = Metadata(tables={t: tm}, relationships=[])
                st = sequence_statistics({t: part}, {t: synth}, seqmeta)[t]
                row.update(fit_s=round(res["fit_s"], 1), fit_cpu_s=round(res["fit_cpu_s"], 1), sample_s=round(res["sample_s"], 1), peak_mb=round(res["peak_mb"]),
                           sequences={t: {k: round(v, 4) for k, v in st.items()}})
                results["sdv_par"] = emit(row)
                rows_out.append(row)
                break
            row["error"] = res["error"]
            emit(row)
            rows_out.append(row)
    # comparison
    ours = results.get("synthloop", {})
    hma = results.get("sdv_hma")
    ours_same = results.get("synthloop_same_subset", ours)
    cmp = {**base, "model": "comparison"}
    if ours.get("finished"):
        cmp["integrity_100"] = ours["referential_integrity"] == 1.0
        cmp["cardinality_ge_0.95"] = ours["cardinality"] >= 0.95
        cmp["fit_le_600s"] = ours["fit_s"] <= 600
        cmp["peak_le_6GB"] = ours["peak_mb"] <= 6144
    if hma and ours_same.get("finished"):
        cmp["hma_subset"] = hma["subset"]
        cmp["quality_ours"] = ours_same["sdmetrics_quality"]
        cmp["quality_hma"] = hma["sdmetrics_quality"]
        cmp["quality_minus_hma"] = ours_same["sdmetrics_quality"] - hma["sdmetrics_quality"]
        cmp["quality_ge_hma_plus_0.10"] = cmp["quality_minus_hma"] >= 0.10
        cmp["fit_ratio_hma_over_ours_same_data"] = hma["fit_s"] / max(ours_same["fit_s"], 1e-9)
        if "fit_cpu_s" in hma and "fit_cpu_s" in ours_same:
            cmp["fit_cpu_ratio_hma_over_ours_same_data"] = hma["fit_cpu_s"] / max(ours_same["fit_cpu_s"], 1e-9)
        cmp["peak_ratio_hma_over_ours_same_data"] = hma["peak_mb"] / max(ours_same["peak_mb"], 1e-9)
        k0 = results.get("synthloop_k0_same_subset")
        if k0:
            cmp["quality_ours_privacy_k0"] = k0["sdmetrics_quality"]
            cmp["quality_minus_hma_privacy_k0"] = k0["sdmetrics_quality"] - hma["sdmetrics_quality"]
            cmp["quality_ge_hma_plus_0.10_privacy_k0"] = cmp["quality_minus_hma_privacy_k0"] >= 0.10
    whole_hma = next((r for r in rows_out if r["dataset"] == name and r["model"] == "sdv_hma" and r["subset"] == "whole"), None)
    if whole_hma is not None and ours.get("finished"):
        cmp["fit_le_hma_whole"] = (ours["fit_s"] <= whole_hma["fit_s"]) if whole_hma["finished"] else \
            f"HMA did not fit whole {name} ({whole_hma.get('error', '')[:80]}); ours took {ours['fit_s']} s"
    par = results.get("sdv_par")
    for t in seq_tables:
        if ours.get("finished") and t in ours.get("sequences", {}):
            s = ours["sequences"][t]
            cmp[f"{t}_length_ks_ours"] = s["length_ks"]
            cmp[f"{t}_gap_ks_ours"] = s["gap_ks"]
            cmp[f"{t}_ks_ge_0.9"] = s["length_ks"] >= 0.9 and s["gap_ks"] >= 0.9
            if par:
                ps = par["sequences"][t]
                cmp[f"{t}_length_ks_par"] = ps["length_ks"]
                cmp[f"{t}_gap_ks_par"] = ps["gap_ks"]
                cmp[f"{t}_ks_ge_par_plus_0.1"] = s["length_ks"] >= ps["length_ks"] + 0.1 and s["gap_ks"] >= ps["gap_ks"] + 0.1
    emit(cmp)
    rows_out.append(cmp)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="small subsets and short limits: checks the bench runs")
    ap.add_argument("--datasets", default="berka_financial,nycflights13")
    ap.add_argument("--our-seconds", type=float, default=180.0, help="time budget of our fit (all tables)")
    ap.add_argument("--epochs", type=int, default=24)
    ap.add_argument("--our-timeout", type=float, default=1200.0)
    ap.add_argument("--hma-whole-timeout", type=float, default=300.0, help="limit for HMA on the whole database")
    ap.add_argument("--sdv-timeout", type=float, default=240.0, help="limit for each SDV subset run")
    ap.add_argument("--par-timeout", type=float, default=300.0, help="limit for each PAR run")
    ap.add_argument("--hma-subsets", default="0.2,0.05", help="fractions of the main table tried after the whole")
    ap.add_argument("--par-sequences", default="40,15", help="sequence counts tried for PAR (largest first)")
    ap.add_argument("--par-epochs", type=int, default=8, help="PAR epochs (SDV default 128: far beyond any time limit here)")
    ap.add_argument("--hma-tables", default="account,disp,loan,order,trans",
                    help="berka tables given to HMA when it refuses the whole schema (it takes at most 5 tables on 2 levels)")
    ap.add_argument("--no-hma-whole", action="store_true", help="skip HMA on the whole database (known not to finish)")
    ap.add_argument("--no-ours-whole", action="store_true", help="skip our run on the whole database (e.g. a rerun of the peer's subset)")
    ap.add_argument("--models", default="synthloop,sdv_hma,sdv_par", help="which models to run")
    ap.add_argument("--also-no-guard", action="store_true",
                    help="also run ours with privacy_k=0 (no privacy guard, as the peers) on the peer's subset")
    ap.add_argument("--no-composite", action="store_true",
                    help="nycflights13 without the flights -> weather composite key (weather only a child of airports)")
    ap.add_argument("--note", default=None, help="a note written into every row (e.g. why a time limit is lower)")
    ap.add_argument("--session", default=None, help="a session tag (number or text, e.g. 2b) written into every row")
    ap.add_argument("--out", default=None, help="also append the JSON lines to this file")
    args = ap.parse_args()
    if args.quick:
        args.our_seconds, args.epochs, args.hma_whole_timeout, args.sdv_timeout, args.par_timeout = 30.0, 4, 120.0, 120.0, 120.0
        args.hma_subsets, args.par_sequences, args.par_epochs = "", "30", 2
    rows: list[dict] = []
    for name in args.datasets.split(","):
        bench_dataset(name, args, rows)
    if args.out:
        with open(args.out, "a") as fh:
            for r in rows:
                fh.write(json.dumps(r, default=str) + "\n")


if __name__ == "__main__":
    main()
