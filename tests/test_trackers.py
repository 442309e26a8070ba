"""MLflow and W&B: what each records of a run, and that a resumed run continues its
tracker run with each epoch once; several loggers at once; tags everywhere."""

from __future__ import annotations

import importlib.machinery
import importlib.util
import json
import shutil
import signal
import subprocess
import sys
import types
from pathlib import Path

import pytest

from flowers_sweep.config.validate import validate
from flowers_sweep.errors import ConfigError
from flowers_sweep.loggers import ManyLoggers, MLflowLogger, build_logger
from flowers_sweep.record.runrecord import TRACKERS_FILE, RunRecord, with_tags

from .helpers.cli import (
    HANG_GUARD_S,
    SLOW,
    TINY,
    make_cfg,
    result,
    run_cli,
    start_cli,
    wait_for_epochs,
)
from .helpers.services import free_port, running, wait_until_answers
from .helpers.shared import made_once
from .helpers.trackers import NO_NETWORK_SITE, recording_proxy, wandb_run

SETTINGS = {"optimizer.lr": 0.001, "scheduler.milestones": [40, 70], "seed": 3}


def row(epoch: int) -> dict[str, float]:
    return {"epoch": epoch, "train_loss": 1.0 / epoch, "val_acc": epoch / 10, "lr": 0.001}


@pytest.fixture(scope="session")
def empty_mlflow_store(tmp_path_factory) -> Path:
    """An MLflow SQLite store with its tables and nothing else, made once: MLflow makes
    them by running its Alembic migrations (a second or more), a copy opens at once."""

    def make(folder: Path) -> None:
        from mlflow import MlflowClient

        MlflowClient(f"sqlite:///{folder / 'store.db'}").search_experiments()

    return made_once(tmp_path_factory, "mlflow_store", make) / "store.db"


def store_uri(template: Path, folder: Path) -> str:
    """A fresh copy of the empty store in `folder`, as a tracking URI."""
    shutil.copyfile(template, folder / "store.db")
    return f"sqlite:///{folder / 'store.db'}"


def sweep_job(tmp_path, num=0):
    """A job folder as Hydra makes one: a sweep folder holding multirun.yaml."""
    sweep = tmp_path / "sweep"
    (sweep / str(num)).mkdir(parents=True)
    (sweep / "multirun.yaml").write_text("hydra: {}\n")
    return sweep / str(num)


# ----------------------------------------------------------------------------- MLflow


def test_mlflow_run_continues_after_a_stop_with_each_epoch_once(
    tmp_path, monkeypatch, empty_mlflow_store
):
    from mlflow import MlflowClient

    monkeypatch.chdir(tmp_path)
    uri = store_uri(empty_mlflow_store, tmp_path)
    run_dir = sweep_job(tmp_path, 4)
    node = {"_target_": "flowers_sweep.loggers.MLflowLogger", "_partial_": True,
            "tracking_uri": uri}  # fmt: skip
    first = build_logger(node, run_dir, 0, SETTINGS, ["baseline", "v2"], "resnet18-relu")
    for epoch in (1, 2, 3):  # epoch 3 logged, then killed before its checkpoint
        first.log_epoch(row(epoch))
    first.close()
    client = MlflowClient(uri)
    run_id = json.loads((run_dir / TRACKERS_FILE).read_text())["mlflow"]["run_id"]
    assert client.get_run(run_id).info.status == "KILLED"

    again = build_logger(node, run_dir, 2, SETTINGS, ["baseline", "v2"], "resnet18-relu")
    assert again.run_id == run_id
    assert client.get_run(run_id).info.status == "RUNNING"
    for epoch in (3, 4):
        again.log_epoch(row(epoch))
    again.log_final(SETTINGS, {"test_acc": 0.75})
    again.close()

    run = client.get_run(run_id)
    assert run.info.status == "FINISHED" and run.info.run_name == "#4 resnet18-relu seed=3"
    history = client.get_metric_history(run_id, "val_acc")
    assert sorted((m.step, m.value) for m in history) == [(1, 0.1), (2, 0.2), (3, 0.3), (4, 0.4)]
    assert [(m.step, m.value) for m in client.get_metric_history(run_id, "final/test_acc")] == [
        (4, 0.75)
    ]
    assert run.data.params == {"optimizer.lr": "0.001", "scheduler.milestones": "[40, 70]",
                               "seed": "3"}  # fmt: skip
    tags = run.data.tags
    assert tags["baseline"] == "" and tags["v2"] == "" and tags["flowers_sweep.sweep"] == "sweep"
    assert tags["flowers_sweep.run_dir"] == str(run_dir)
    experiment = client.get_experiment(run.info.experiment_id)
    assert experiment.name == "sweep"  # the sweep folder, relative to the working dir


def test_a_tracker_that_stops_answering_costs_points_not_the_run(
    tmp_path, caplog, empty_mlflow_store
):
    logger = MLflowLogger(tmp_path, 0, SETTINGS, [], "x", store_uri(empty_mlflow_store, tmp_path))
    logger.client.log_batch = lambda *a, **k: (_ for _ in ()).throw(OSError("refused"))
    logger.log_epoch(row(1))
    logger.log_epoch(row(2))
    logger.close()
    warnings = [r for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1 and "could not log epoch 1" in warnings[0].getMessage()


@pytest.mark.e2e
def test_both_trackers_through_a_sweep_killed_and_resumed_and_an_mlflow_server(
    tmp_path, cache_dir, empty_mlflow_store
):
    """The issue's acceptance, in one sweep of 2 runs of 2 epochs logging to TensorBoard,
    MLflow and W&B (logger=many, plus W&B), killed with SIGKILL during job 0's second
    epoch and relaunched.

    MLflow: 2 runs in one experiment, read back by MlflowClient (settings, every epoch
    once, the result, tags); the killed run continued, with no step twice; `mlflow
    server` on localhost (started while the sweep trains: it takes seconds; without its
    job runner, a pool of processes for GenAI jobs that serving runs does not use) serves
    them through its REST API, and is stopped by its pid. W&B offline: each run's own files
    hold its settings and metrics; the killed run's id continued, no epoch twice (what
    W&B had not written at the SIGKILL is lost: docs/tracking.md); no connection leaves
    the machine (Python's sockets are watched by an audit hook, and anything honouring
    the proxy variables, W&B's Go core too, reaches a listener of the test instead)."""
    from mlflow import MlflowClient

    uri = store_uri(empty_mlflow_store, tmp_path)  # with its tables: no two processes race
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(NO_NETWORK_SITE)
    network_log, sweep, port = tmp_path / "network.log", tmp_path / "sweep", free_port()
    server = ["env", "MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false", sys.executable, "-m", "mlflow",
              "server", "--backend-store-uri", uri, "--host", "127.0.0.1", "--port", str(port),
              "--workers", "1"]  # fmt: skip
    trackers = ["logger=many", "+logger@logger.loggers.wandb=wandb", "tags=[study]",
                f"logger.loggers.mlflow.tracking_uri={uri}"]  # fmt: skip
    # Job 0's second epoch (half SLOW's data: over a second here) is where the kill lands;
    # job 1 (never stopped) on less data: the same paths, sooner. No report: it reads
    # no tracker (test_the_tables_carry_tags_when_runs_have_them checks its tags).
    args = ["-m", *SLOW, "trainer.epochs=2", "trainer.checkpoint_every_epochs=1",
            "trainer.keep_weights=none", "dataset.train_size=160,48", "aggregate=false",
            *trackers, f"hydra.sweep.dir={sweep}"]  # fmt: skip
    with recording_proxy() as (proxy, seen), running(server) as service:
        env = {"PYTHONPATH": str(site), "NETWORK_LOG": str(network_log),
               "HTTP_PROXY": proxy, "HTTPS_PROXY": proxy, "NO_PROXY": "",
               "WANDB_CONFIG_DIR": str(tmp_path / "wandb_config"),
               "WANDB_CACHE_DIR": str(tmp_path / "wandb_cache")}  # fmt: skip
        proc = start_cli(*args, cache=cache_dir, env=env)
        wait_for_epochs(sweep / "0", 1, proc)
        proc.send_signal(signal.SIGKILL)  # the basic launcher runs job 0 in this process
        proc.communicate(timeout=HANG_GUARD_S)
        killed = json.loads((sweep / "0" / TRACKERS_FILE).read_text())
        again = run_cli(*args, cache=cache_dir, env=env)
        assert again.returncode == 0, again.stderr[-2000:]
        wait_until_answers(service, f"http://127.0.0.1:{port}/health")
        over_rest = MlflowClient(f"http://127.0.0.1:{port}")
        everything = [e.experiment_id for e in over_rest.search_experiments()]
        served = []
        for run in over_rest.search_runs(everything):
            history = over_rest.get_metric_history(run.info.run_id, "val_acc")
            served.append((run.info.run_id, sorted(m.step for m in history)))
    assert not network_log.exists(), network_log.read_text()
    assert seen == []

    client = MlflowClient(uri)
    (experiment,) = [e for e in client.search_experiments() if e.name == str(sweep)]
    runs = client.search_runs([experiment.experiment_id])
    assert len(runs) == 2
    assert killed["mlflow"]["run_id"] in [r.info.run_id for r in runs]  # continued
    for run in runs:
        run_dir = sweep / run.data.tags["flowers_sweep.job"]
        assert run.info.status == "FINISHED"
        assert run.data.tags["flowers_sweep.run_dir"] == str(run_dir)
        assert "study" in run.data.tags and result(run_dir)["tags"] == ["study"]
        assert run.data.params["seed"] == str(result(run_dir)["seed"])
        assert run.data.params["dataset.train_size"] == str(result(run_dir)["train_size"])
        assert run.data.params["optimizer.lr"] == "0.001"
        assert "trainer.threads" not in run.data.params  # not a setting of the experiment
        steps = [m.step for m in client.get_metric_history(run.info.run_id, "val_loss")]
        assert sorted(steps) == [1, 2]  # each epoch once, the killed run's too
        assert run.data.metrics["final/test_acc"] == pytest.approx(result(run_dir)["test_acc"])
    assert sorted(served) == sorted((r.info.run_id, [1, 2]) for r in runs)

    for job in ("0", "1"):
        run_dir = sweep / job
        logged = wandb_run(run_dir)
        attempts = sorted(run_dir.glob("wandb/offline-run-*"))
        run_id = json.loads((run_dir / TRACKERS_FILE).read_text())["wandb"]["id"]
        assert set(logged["ids"]) == {run_id}, (logged["ids"], attempts)
        assert len(attempts) == (2 if job == "0" else 1)
        epochs = [r["epoch"] for r in logged["history"] if "val_acc" in r]
        assert len(epochs) == len(set(epochs)) and 2 in epochs  # none twice
        assert logged["config"]["optimizer.lr"] == 0.001
        assert logged["config"]["run_dir"] == str(run_dir)
        assert logged["summary"]["final/test_acc"] == pytest.approx(result(run_dir)["test_acc"])
        assert logged["tags"] == ["study"] and logged["group"] == str(sweep)
        if job == "1":  # never stopped: every epoch
            assert sorted(epochs) == [1, 2]
    assert (
        killed["wandb"]["id"]
        == json.loads((sweep / "0" / TRACKERS_FILE).read_text())["wandb"]["id"]
    )


# ------------------------------------------------------------------------------ W&B


class FakeRun:
    """What WandbLogger uses of a W&B run, recording what it is given."""

    def __init__(self, **init):
        self.id, self.init, self.rows, self.summary, self.ended = init["id"], init, [], {}, None

    def define_metric(self, *args, **kwargs):
        pass

    def log(self, row):
        self.rows.append(row["epoch"])

    def finish(self, exit_code=0):
        self.ended = exit_code


def fake_wandb(monkeypatch):
    """A stand-in `wandb` module: the logger's own logic, without W&B's service process
    and exit hooks, which a test process must not keep."""
    runs = []
    module = types.ModuleType("wandb")
    module.__spec__ = importlib.machinery.ModuleSpec("wandb", None)
    module.setup = lambda settings: None
    module.Settings = dict
    module.init = lambda **init: runs.append(FakeRun(**init)) or runs[-1]
    monkeypatch.setitem(sys.modules, "wandb", module)
    return runs


def test_a_stopped_wandb_run_continues_with_each_epoch_once(tmp_path, monkeypatch):
    """The first process logged epoch 3 and stopped (SIGTERM: W&B wrote it) with epoch 2
    checkpointed: the resumed process trains epoch 3 again, and does not log it twice."""
    runs = fake_wandb(monkeypatch)
    monkeypatch.chdir(tmp_path)  # the group: the sweep folder, relative to the working dir
    run_dir = sweep_job(tmp_path, 1)
    node = {"_target_": "flowers_sweep.loggers.WandbLogger", "_partial_": True}
    first = build_logger(node, run_dir, 0, SETTINGS, ["t"], "resnet18-relu")
    for epoch in (1, 2, 3):
        first.log_epoch(row(epoch))
    first.close()
    again = build_logger(node, run_dir, 2, SETTINGS, ["t"], "resnet18-relu")
    for epoch in (3, 4):
        again.log_epoch(row(epoch))
    again.log_final(SETTINGS, {"test_acc": 0.5})
    again.close()
    assert runs[0].id == runs[1].id and runs[1].init["resume"] == "allow"
    assert runs[0].rows + runs[1].rows == [1, 2, 3, 4]
    assert (runs[0].ended, runs[1].ended) == (1, 0)  # stopped early: failed; then finished
    assert runs[1].summary == {"final/test_acc": 0.5}
    assert runs[1].init["group"] == "sweep" and runs[1].init["mode"] == "offline"
    assert runs[1].init["name"] == "#1 resnet18-relu seed=3"
    assert runs[1].init["config"] == {**SETTINGS, "run_dir": str(run_dir.absolute())}


# --------------------------------------------------------------- many, extras, tags


class Member:
    def __init__(self, calls, name, fail_close=False):
        self.calls, self.name, self.fail_close = calls, name, fail_close

    def log_epoch(self, row):
        self.calls.append((self.name, "epoch", row["epoch"]))

    def log_final(self, settings, metrics):
        self.calls.append((self.name, "final", metrics["test_acc"]))

    def close(self):
        self.calls.append((self.name, "close", None))
        if self.fail_close:
            raise OSError("gone")


def test_many_loggers_call_each_member_and_close_every_one(tmp_path):
    calls = []
    given = {}

    def member(name, fail_close=False):
        def make(run_dir, tags):  # takes only some of the arguments: gets only those
            given[name] = (run_dir, tags)
            return Member(calls, name, fail_close)

        return make

    many = ManyLoggers({"b": member("b"), "a": member("a", True), "off": None},
                       tmp_path, 0, SETTINGS, ["t"], "x")  # fmt: skip
    many.log_epoch(row(1))
    many.log_final(SETTINGS, {"test_acc": 0.5})
    many.close()
    assert given == {"a": (tmp_path, ["t"]), "b": (tmp_path, ["t"])}
    assert calls == [("a", "epoch", 1), ("b", "epoch", 1), ("a", "final", 0.5),
                     ("b", "final", 0.5), ("a", "close", None), ("b", "close", None)]  # fmt: skip


def test_a_member_that_cannot_start_closes_the_started_ones(tmp_path):
    calls = []

    def broken(run_dir):
        raise ConfigError("no")

    with pytest.raises(ConfigError):
        ManyLoggers({"a": lambda: Member(calls, "a"), "b": broken}, tmp_path, 0, {}, [], "x")
    assert calls == [("a", "close", None)]


def test_logger_many_composes_tensorboard_and_mlflow_and_takes_more():
    cfg = make_cfg("logger=many", "+logger@logger.loggers.wandb=wandb")
    assert set(cfg.logger.loggers) == {"tensorboard", "mlflow", "wandb"}
    validate(cfg)
    cfg = make_cfg("logger=many", "~logger.loggers.mlflow")
    assert set(cfg.logger.loggers) == {"tensorboard"}


@pytest.mark.parametrize("logger,extra", [("mlflow", "mlflow"), ("wandb", "wandb"),
                                          ("many", "mlflow")])  # fmt: skip
def test_a_tracker_not_installed_is_one_line_naming_the_extra(logger, extra, monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == extra else real(name, *a))  # fmt: skip
    with pytest.raises(ConfigError) as caught:
        validate(make_cfg(f"logger={logger}"))
    message = str(caught.value)
    assert f"pip install 'flowers_sweep[{extra}]'" in message and "\n" not in message


BAD = [("tags=oops", "tags"), ("fail_fast=0", "fail_fast"), ('tags=[ok,"bad!tag"]', "tags"),
       (f"tags=[{'x' * 65}]", "tags"), ("logger.mode=live", "logger.mode")]  # fmt: skip


@pytest.mark.parametrize("override,key", BAD)
def test_bad_tracking_values_are_named(override, key):
    overrides = ["logger=wandb", override] if key == "logger.mode" else [override]
    with pytest.raises(ConfigError, match=rf"^{key}="):
        validate(make_cfg(*overrides))


def test_tags_go_to_result_json_only_when_given():
    assert with_tags({"status": "completed"}, []) == {"status": "completed"}
    assert list(with_tags({"status": "failed"}, ["a", 1])) == ["status", "tags"]
    assert with_tags({"status": "failed"}, ["a", 1])["tags"] == ["a", "1"]


def test_the_tables_carry_tags_when_runs_have_them(tmp_path):
    from flowers_sweep.aggregate.runs import runs_table
    from flowers_sweep.aggregate.tables import results_table

    def run(seed, tags):
        config = {"seed": seed, "tags": tags, "trainer.epochs": 1}
        done = {"status": "completed", "model": "m", "activation": "relu", "test_acc": 0.5}
        return RunRecord(tmp_path / str(seed), config, done, _choices={})

    plain = runs_table([run(0, []), run(1, [])])
    assert "tags" not in plain.columns  # the report's shape, as before tags existed
    table = runs_table([run(0, ["a", "b"]), run(1, ["c"])])
    assert list(table["tags"]) == ["a,b", "c"]
    assert list(table.columns).index("tags") == list(table.columns).index("seed") + 1
    assert list(results_table(table)["tags"]) == ["a,b,c"]


def test_the_wandb_reader_reads_what_wandb_wrote(tmp_path):
    """The test helper that reads W&B's run file, on a run made in a child process (W&B
    starts a service and atexit hooks that a test process must not keep)."""
    code = (
        "import wandb; wandb.setup(settings=wandb.Settings(mode='offline')); "
        "r = wandb.init(project='p', mode='offline', id='abc', dir="
        + repr(str(tmp_path))
        + ", config={'k': 1}, tags=['t'], settings=wandb.Settings(silent=True, console='off')); "
        "[r.log({'epoch': e, 'val_acc': e / 10}) for e in range(1, 1200)]; "
        "r.summary['s'] = 2; r.finish()"
    )  # 1200 rows: records cross W&B's 32 KiB blocks
    subprocess.run([sys.executable, "-c", code], check=True, timeout=HANG_GUARD_S)
    logged = wandb_run(tmp_path)
    assert logged["ids"] == ["abc"] and logged["config"]["k"] == 1 and logged["tags"] == ["t"]
    assert [r["epoch"] for r in logged["history"]] == list(range(1, 1200))
    assert logged["summary"]["s"] == 2


def test_tags_and_fail_fast_do_not_make_another_run():
    """A folder recorded before these keys existed, or with other tags, holds the same
    run: it resumes instead of being refused as other settings."""
    from omegaconf import OmegaConf

    from flowers_sweep.record.runfolder import changed_settings
    from flowers_sweep.record.settings import experiment_settings

    def settings(*overrides):
        return OmegaConf.to_container(make_cfg(*TINY, *overrides), resolve=True)

    before_tags = {k: v for k, v in experiment_settings(settings()).items()}
    assert "tags" not in before_tags and "fail_fast" not in before_tags
    assert changed_settings(before_tags, settings("tags=[x]", "fail_fast=2")) == ""
    assert changed_settings(before_tags, settings("seed=5")) == "seed=0 (now 5)"


def test_a_list_of_logger_presets_is_refused_in_one_line():
    """Hydra would merge them into one node, the last winning: TensorBoard silently off."""
    from flowers_sweep.config.overrides import refuse_preset_lists

    refuse_preset_lists(["logger=many", "seed=1", "tags=[a,b]"])
    with pytest.raises(
        ConfigError, match=r"^logger=\[tensorboard,mlflow\] is invalid.*logger=many"
    ):
        refuse_preset_lists(["seed=1", "logger=[tensorboard,mlflow]"])


def test_a_tracker_that_cannot_start_is_one_line_and_a_dead_server_is_not_waited_for(tmp_path):
    """MLflow's client would retry a refused connection for minutes; a URI MLflow does not
    take would end in its traceback. Both are one line naming the logger."""
    port = free_port()  # nothing listens there
    node = {"_target_": "flowers_sweep.loggers.MLflowLogger", "_partial_": True,
            "tracking_uri": f"http://127.0.0.1:{port}"}  # fmt: skip
    with pytest.raises(ConfigError, match=rf"tracking_uri='http://127.0.0.1:{port}' cannot be"):
        build_logger(node, tmp_path, 0, SETTINGS, [], "x")
    node["tracking_uri"] = "nonsense://x"
    with pytest.raises(
        ConfigError, match=r"^logger: flowers_sweep.loggers.MLflowLogger could not start: \w+"
    ) as caught:
        build_logger(node, tmp_path, 0, SETTINGS, [], "x")
    assert "\n" not in str(caught.value)
