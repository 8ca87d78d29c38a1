"""Scale-out on Ray: a real two-node Ray cluster on loopback (ray.cluster_utils.Cluster, one CPU per
node, small object stores), started once for this module. No part of Ray is mocked."""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from synthloop.runners import LocalRunner
from tests.conftest import one_line_error, run_cli

MB = 1024 * 1024


@pytest.fixture(scope="module")
def cluster():
    ray = pytest.importorskip("ray")  # the `ray` extra (in `dev`); the missing-Ray tests run without it
    from ray.cluster_utils import Cluster

    c = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "object_store_memory": 150 * MB,
                                                      "include_dashboard": False})
    c.add_node(num_cpus=1, object_store_memory=150 * MB)
    ray.init(address=c.address, log_to_driver=False)
    c.wait_for_nodes()
    yield c
    ray.shutdown()
    c.shutdown()


@pytest.fixture(scope="module")
def copula_model(tmp_path_factory, shared_data) -> Path:
    from synthloop.synthesizers.copula import GaussianCopulaSynthesizer

    df = pd.read_csv(shared_data / "adult" / "adult.csv.gz", nrows=1500)
    path = tmp_path_factory.mktemp("model") / "adult.npz"
    GaussianCopulaSynthesizer(random_state=0).fit(df).save(path)
    return path


def _ray_runner(workers: int):
    from synthloop.runners import RayRunner

    return RayRunner(workers=workers, cpus_per_task=2 / workers if workers > 2 else 1)


def test_two_nodes_are_up(cluster):
    import ray

    assert len([n for n in ray.nodes() if n["Alive"]]) == 2
    assert _ray_runner(2).describe()["nodes"] == 2


def test_sampling_gives_the_same_rows_with_one_or_three_workers_as_locally(cluster, copula_model, tmp_path):
    from synthloop.runners.sampling import sample_to_file
    from synthloop.synthesizers import load_synthesizer

    outs = {}
    for name, runner in [("local", LocalRunner()), ("ray1", _ray_runner(1)), ("ray3", _ray_runner(3))]:
        path, rows = sample_to_file(copula_model, 2_300, tmp_path / f"{name}.parquet", seed=11, shard_rows=500,
                                    runner=runner)
        assert rows == 2_300
        outs[name] = pd.read_parquet(path)
    pd.testing.assert_frame_equal(outs["local"], outs["ray1"])
    pd.testing.assert_frame_equal(outs["local"], outs["ray3"])
    # and the same rows as the single-machine streaming path (`synthloop sample` to one file)
    synth = load_synthesizer(copula_model)
    batches = pd.concat(synth.sample_batches(2_300, seed=11, batch_rows=500), ignore_index=True)
    pd.testing.assert_frame_equal(outs["local"], batches, check_dtype=False)


def test_quotas_and_conditions_hold_exactly_across_shards(cluster, copula_model, tmp_path):
    from synthloop.runners.sampling import iter_dataset, sample_to_dataset

    man = sample_to_dataset(copula_model, 2_501, tmp_path / "ds", seed=5, shard_rows=400, runner=_ray_runner(2),
                            quotas={"sex": {"Male": 0.3, "Female": 0.7}}, conditions={"race": "White"})
    assert man["complete"] and man["n_shards"] == 7
    df = pd.concat(iter_dataset(tmp_path / "ds"), ignore_index=True)
    assert len(df) == 2_501
    assert df["sex"].value_counts().to_dict() == {"Female": 1751, "Male": 750}  # largest remainder of 0.7 x 2501
    assert (df["race"] == "White").all()
    local = sample_to_dataset(copula_model, 2_501, tmp_path / "local", seed=5, shard_rows=400,
                              quotas={"sex": {"Male": 0.3, "Female": 0.7}}, conditions={"race": "White"})
    pd.testing.assert_frame_equal(df, pd.concat(iter_dataset(tmp_path / "local"), ignore_index=True))
    assert local["fingerprint"] == man["fingerprint"]


def test_an_interrupted_dataset_resumes_by_drawing_only_the_missing_shards(cluster, copula_model, tmp_path):
    from synthloop.runners.sampling import MANIFEST, iter_dataset, sample_to_dataset

    out = tmp_path / "ds"
    full = sample_to_dataset(copula_model, 2_000, out, seed=2, shard_rows=500, runner=_ray_runner(2))
    before = pd.concat(iter_dataset(out), ignore_index=True)
    # what a run killed after two shards leaves: two parts and a manifest listing them
    man = json.loads((out / MANIFEST).read_text())
    for i in ("2", "3"):
        (out / man["shards"].pop(i)["file"]).unlink()
    man["complete"] = False
    (out / MANIFEST).write_text(json.dumps(man))
    again = sample_to_dataset(copula_model, 2_000, out, seed=2, shard_rows=500, runner=_ray_runner(2))
    assert again["run"]["shards_drawn"] == 2 and again["run"]["shards_resumed"] == 2
    assert again["complete"] and again["fingerprint"] == full["fingerprint"]
    pd.testing.assert_frame_equal(before, pd.concat(iter_dataset(out), ignore_index=True))


def test_cli_sample_with_ray_address_writes_a_dataset_readable_as_one_table(cluster, copula_model, tmp_path):
    r = run_cli("sample", str(copula_model), "-n", "1200", "-o", str(tmp_path / "ds"), "--seed", "4",
                "--shard-rows", "500", "--ray-address", cluster.address, "-q", "sex=Male:0.5,Female:0.5")
    assert r.returncode == 0, r.stderr
    assert "on ray (2 workers)" in r.stdout
    df = pd.read_parquet(tmp_path / "ds")  # the folder reads as one table (pyarrow dataset)
    assert len(df) == 1200 and df["sex"].value_counts().to_dict() == {"Male": 600, "Female": 600}


def test_without_ray_installed_the_flag_says_how_to_install_it(copula_model, tmp_path):
    code = ("import sys; sys.modules['ray'] = None\n"  # as if Ray were not installed
            "from synthloop.cli import main\nmain()")
    import subprocess

    r = subprocess.run([sys.executable, "-c", code, "sample", str(copula_model), "-o", str(tmp_path / "x.csv"), "--ray"],
                       capture_output=True, text=True, timeout=120)
    line = one_line_error(r)
    assert "--ray needs Ray, which is not installed" in line and "pip install 'synthloop[ray]'" in line
    assert not (tmp_path / "x.csv").exists()


def test_importing_the_runners_does_not_import_ray():
    import subprocess

    code = ("import sys\nimport synthloop.runners, synthloop.runners.sampling\nfrom synthloop.runners import RayRunner\n"
            "RayRunner(address='auto')\nprint('ray' in sys.modules)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "False"


GEN_SPEC = """\
name: ray_rows
rows: 24
seed: 3
llm: {backend: openai, base_url: BASE_URL, model: fake, concurrency: 2, max_retries: 0}
columns:
  - name: type
    sampler: {categorical: {credit: 0.5, debit: 0.25, transfer: 0.25}}
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
targets:
  type: {credit: 0.5, debit: 0.25, transfer: 0.25}
  segment: {retail: 0.75, sme: 0.25}
diversity: {max_rounds: 0}
"""


def test_generation_on_actors_survives_a_killed_worker_with_no_row_lost_or_doubled(cluster, tmp_path):
    import os
    import signal

    from synthloop.generate.runner import PromptedGenerator
    from synthloop.generate.store import journal_path_for
    from synthloop.llm.testing import FakeOpenAIServer
    from synthloop.spec import loads_spec

    # the server answers 6 requests and holds the rest: a row has finished, and both actors have rows
    # in flight, when the test kills actor 0's process; then it lets the held requests through
    with FakeOpenAIServer(hold_after=6) as srv:
        spec = loads_spec(GEN_SPEC.replace("BASE_URL", srv.base_url))
        gen = PromptedGenerator(spec, cache_dir=False, runner=_ray_runner(2))
        killed: list[int] = []

        def on_progress(p):
            if p["done"] >= 1 and not killed and gen._actor_pool is not None:
                killed.append(gen._actor_pool.pids[0])
                os.kill(killed[0], signal.SIGKILL)
                srv.release()

        out = tmp_path / "rows.csv"
        res = gen.generate(out=out, on_progress=on_progress, keep_journal=True)
        local = PromptedGenerator(loads_spec(GEN_SPEC.replace("BASE_URL", srv.base_url)), cache_dir=False).generate()
    assert killed and gen.actors_replaced_ == 1
    assert res.summary["rows_written"] == 24 and not res.failed
    lines = [json.loads(line) for line in journal_path_for(out).read_text().splitlines()[1:]]
    assert sorted(r["row"] for r in lines) == list(range(24))  # every row journaled exactly once
    assert res.data["type"].value_counts().to_dict() == {"credit": 12, "debit": 6, "transfer": 6}
    assert res.data["segment"].value_counts().to_dict() == {"retail": 18, "sme": 6}
    pd.testing.assert_frame_equal(res.data, local.data)  # the same rows as on one machine
    assert res.summary["runner"]["runner"] == "ray"


def test_evaluating_a_dataset_on_ray_gives_exact_column_shapes_over_all_rows(cluster, copula_model, shared_data, tmp_path):
    from synthloop.evaluate.headline import evaluate_tables
    from synthloop.runners.evaluation import evaluate_dataset
    from synthloop.runners.sampling import sample_to_dataset
    from synthloop.schema import infer_schema

    real = pd.read_csv(shared_data / "adult" / "adult.csv.gz", nrows=1500)
    schema = infer_schema(real)
    sample_to_dataset(copula_model, 3_000, tmp_path / "ds", seed=8, shard_rows=700, runner=_ray_runner(2))
    whole = evaluate_tables(real, pd.read_parquet(tmp_path / "ds"), None, schema)
    fig = evaluate_dataset(real, tmp_path / "ds", None, schema, runner=_ray_runner(2), sample_rows=800, seed=1)
    assert fig["column_shapes"] == pytest.approx(whole["column_shapes"], abs=1e-12)  # all rows, not the sample
    for a, b in zip(fig["details"]["shapes"], whole["details"]["shapes"]):
        assert a["column"] == b["column"] and a["score"] == pytest.approx(b["score"], abs=1e-12)
    assert fig["rows_synthetic"] == 3_000 and fig["scale"]["sample_rows"] == 800 and fig["scale"]["partitions"] == 5
    assert "seeded sample of 800 rows" in fig["scale"]["note"]
    again = evaluate_dataset(real, tmp_path / "ds", None, schema, sample_rows=800, seed=1)  # locally: same figures
    assert again["quality_score"] == pytest.approx(fig["quality_score"], abs=1e-12)


def test_copula_correlation_by_map_reduce_on_ray_equals_the_local_fit(cluster, shared_data):
    from synthloop.runners import RayRunner
    from synthloop.runners.training import fit_distributed
    from synthloop.synthesizers.copula import GaussianCopulaSynthesizer

    df = pd.read_csv(shared_data / "adult" / "adult.csv.gz", nrows=1200)
    local = GaussianCopulaSynthesizer(random_state=3).fit(df)
    spread = fit_distributed(GaussianCopulaSynthesizer(random_state=3), df, RayRunner(workers=2))
    np.testing.assert_allclose(spread.correlation_, local.correlation_, rtol=0, atol=1e-12)
    pd.testing.assert_frame_equal(spread.sample(200, seed=1), local.sample(200, seed=1))


@pytest.mark.slow
@pytest.mark.parametrize("cache_bytes,train_batch", [(None, "global"), (0, "global"), (None, "per_worker")],
                         ids=["shares-in-memory", "streamed-from-ray-data", "a-whole-batch-per-worker"])
def test_ray_train_fit_scores_within_a_hundredth_of_a_local_fit(cluster, shared_data, tmp_path, cache_bytes, train_batch):
    from synthloop.evaluate.headline import evaluate_tables
    from synthloop.runners import RayRunner
    from synthloop.runners.training import fit_distributed
    from synthloop.synthesizers import load_synthesizer
    from synthloop.synthesizers.autoregressive import AutoregressiveSynthesizer

    df = pd.read_csv(shared_data / "adult" / "adult.csv.gz", nrows=3000)
    # a whole batch per worker halves the optimizer steps of an epoch: it needs the epochs to converge
    epochs = 6 if train_batch == "global" else 16
    local = AutoregressiveSynthesizer(epochs=epochs, random_state=0).fit(df)
    spread = fit_distributed(AutoregressiveSynthesizer(epochs=epochs, random_state=0), df,
                             RayRunner(workers=2, train_batch=train_batch), cache_bytes=cache_bytes)
    assert spread.train_workers_ == 2 and len(spread.history_) >= 1
    phases = spread.train_timings_
    assert phases["train_batch"] == train_batch
    assert phases["batch_per_worker"] == (512 if train_batch == "per_worker" else 256)  # the local batch is 512
    assert phases["cached_shard"] is (cache_bytes is None)  # 0: every epoch streams its share from Ray Data
    assert phases["worker_threads"] == 1 and phases["omp_num_threads"] == "1"  # one core per worker, no more
    # where the epochs' CPU went (summed over workers), for the benchmark's per-step figures
    assert set(phases["cpu_split_epochs"]) == {"forward", "backward", "optimizer", "loop_other", "other_threads"}
    assert phases["steps"] >= 2 * len(spread.history_) and phases["samples"] >= phases["steps"]
    spread.save(tmp_path / "ray.npz")
    again = load_synthesizer(tmp_path / "ray.npz")  # the same model file format as a local fit
    assert type(again) is type(local)
    q = [evaluate_tables(df, m.sample(3000, seed=1), None, local.schema_)["quality_score"] for m in (local, again)]
    assert abs(q[0] - q[1]) <= 0.01, q


def test_an_unknown_train_batch_is_one_error_before_any_worker_starts(cluster, shared_data):
    from synthloop.runners import RayRunner, RunnerError
    from synthloop.runners.training import fit_distributed
    from synthloop.synthesizers.autoregressive import AutoregressiveSynthesizer

    df = pd.read_csv(shared_data / "adult" / "adult.csv.gz", nrows=300)
    with pytest.raises(RunnerError, match="train_batch must be 'global' or 'per_worker', not 'half'"):
        fit_distributed(AutoregressiveSynthesizer(epochs=1), df, RayRunner(workers=2, train_batch="half"))


def test_more_training_workers_than_cluster_cpus_is_one_error_not_a_hang(cluster, shared_data):
    from synthloop.runners import RayRunner, RunnerError
    from synthloop.runners.training import fit_distributed
    from synthloop.synthesizers.autoregressive import AutoregressiveSynthesizer

    df = pd.read_csv(shared_data / "adult" / "adult.csv.gz", nrows=300)
    with pytest.raises(RunnerError, match="3 workers x 1 CPU need 3 CPUs but the Ray cluster has 2; pass --workers 2"):
        fit_distributed(AutoregressiveSynthesizer(epochs=1), df, RayRunner(workers=3))


@pytest.mark.slow
def test_cli_fit_and_evaluate_with_ray_address(cluster, copula_model, shared_data, tmp_path):
    real = tmp_path / "real.csv"
    pd.read_csv(shared_data / "adult" / "adult.csv.gz", nrows=1000).to_csv(real, index=False)
    r = run_cli("fit", str(real), "-o", str(tmp_path / "m.npz"), "--model", "copula", "--ray-address", cluster.address)
    assert r.returncode == 0, r.stderr
    r = run_cli("sample", str(tmp_path / "m.npz"), "-n", "1500", "-o", str(tmp_path / "ds"), "--shard-rows", "600",
                "--seed", "1")
    assert r.returncode == 0, r.stderr
    r = run_cli("evaluate", str(real), str(tmp_path / "ds"), "--ray-address", cluster.address, "--sample-rows", "500",
                "--json", str(tmp_path / "fig.json"))
    assert r.returncode == 0, r.stderr
    fig = json.loads((tmp_path / "fig.json").read_text())
    assert fig["rows_synthetic"] == 1500 and fig["scale"]["sample_rows"] == 500 and fig["scale"]["runner"] == "ray"
    assert "column shapes over all 1,500 synthetic rows" in r.stdout


def test_a_dataset_is_never_written_into_a_folder_of_other_files(copula_model, tmp_path):
    from synthloop.errors import DataError
    from synthloop.runners.sampling import sample_to_dataset

    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "part-00000.parquet").write_text("not ours")
    for fresh in (False, True):
        with pytest.raises(DataError, match="holds files but no _manifest.json"):
            sample_to_dataset(copula_model, 100, tmp_path / "mine", seed=1, fresh=fresh)
    assert (tmp_path / "mine" / "part-00000.parquet").read_text() == "not ours"


MIXED_SPEC = """\
name: visits
rows: 16
seed: 1
llm: {backend: openai, base_url: BASE_URL, model: fake, concurrency: 2, max_retries: 0}
learn:
  data: visits.csv
  model: copula
columns:
  - name: note
    llm:
      prompt: "Clinical note for a {{ severity }} severity visit to {{ department }}, patient aged {{ age }}."
      max_chars: 200
      checks:
        must_mention: [department]
        expressions: ["contains(text, 'urgent') == (severity == 'high')"]
"""


def _note_answer(body: dict) -> str:
    """A note that states its row's severity and department (what the spec's checks ask)."""
    import re

    user = body["messages"][-1]["content"]
    sev, dept = re.search(r"a (high|low) severity visit to (\w+)", user).groups()
    lead = "Urgent" if sev == "high" else "Routine check"
    return json.dumps({"note": f"{lead}: patient seen today in {dept}, follow up planned for next week."})


@pytest.mark.slow
def test_generate_ray_on_a_mixed_spec_writes_the_rows_of_a_local_run(cluster, tmp_path):
    """`generate --ray-address` with a learn: block + LLM column: the learned columns are sampled once on
    the driver (in the plan); the actors write the text, each with the real-text guides the driver
    planned for those rows (nearest real rows as examples, style rules), so prompts and rows match."""
    from synthloop.generate.runner import PromptedGenerator
    from synthloop.llm.testing import FakeOpenAIServer
    from synthloop.spec import load_spec
    from tests.test_mixed_spec import visits

    visits(120).to_csv(tmp_path / "visits.csv", index=False)
    with FakeOpenAIServer(answer=_note_answer) as srv:
        (tmp_path / "spec.yaml").write_text(MIXED_SPEC.replace("BASE_URL", srv.base_url))
        r = run_cli("generate", str(tmp_path / "spec.yaml"), "-o", str(tmp_path / "on_ray.csv"), "--no-cache",
                    "--ray-address", cluster.address, "--workers", "2")
        assert r.returncode == 0, r.stderr
        on_ray = [q["messages"][-1]["content"] for q in srv.requests]
        PromptedGenerator(load_spec(tmp_path / "spec.yaml"), cache_dir=False).generate(out=tmp_path / "local.csv")
        on_driver = [q["messages"][-1]["content"] for q in srv.requests[len(on_ray):]]
    ray_rows, local_rows = pd.read_csv(tmp_path / "on_ray.csv"), pd.read_csv(tmp_path / "local.csv")
    assert len(ray_rows) == 16 and {"age", "severity", "department", "note"} <= set(ray_rows.columns)
    pd.testing.assert_frame_equal(ray_rows, local_rows)  # learned columns and notes: the rows of one machine
    assert sorted(on_ray) == sorted(on_driver) and all("Examples:" in p for p in on_ray)


def test_an_actor_writes_a_mixed_spec_row_with_the_prompt_the_driver_would_send(tmp_path, monkeypatch):
    """What an actor gets (a copy of the plan and of the driver's planned text guides) yields the same
    prompt and record as the driver itself: no Ray needed to check that (RowWorker is a plain class)."""
    import pickle

    from synthloop.generate.runner import PromptedGenerator
    from synthloop.llm.testing import FakeOpenAIServer
    from synthloop.runners.generation import RowWorker
    from synthloop.spec import load_spec
    from tests.test_mixed_spec import visits

    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        monkeypatch.setenv(var, os.environ.get(var, ""))  # RowWorker pins them: restored after the test
    visits(120).to_csv(tmp_path / "visits.csv", index=False)
    with FakeOpenAIServer(answer=_note_answer) as srv:
        (tmp_path / "spec.yaml").write_text(MIXED_SPEC.replace("BASE_URL", srv.base_url))
        driver = PromptedGenerator(load_spec(tmp_path / "spec.yaml"), cache_dir=False)
        plan = driver.plan(16)
        driver._records = plan.frame.to_dict("records")
        actor = RowWorker(load_spec(tmp_path / "spec.yaml"), False, threads=1)
        actor.setup(pickle.loads(pickle.dumps(plan)), pickle.loads(pickle.dumps(driver.guides())))
        rows = [actor.run(i, 0, None, None) for i in (0, 5)]
        on_actor = [q["messages"] for q in srv.requests]
        same = [driver._run_row(plan, i) for i in (0, 5)]
        assert [(r["status"], r["values"]) for r in rows] == [(r["status"], r["values"]) for r in same]
        on_driver = [q["messages"] for q in srv.requests[len(on_actor):]]
    assert on_actor == on_driver and all("Examples:" in m[-1]["content"] for m in on_actor)
    assert actor.threads()["OMP_NUM_THREADS"] == "1"
