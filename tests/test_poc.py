"""svde.experiments.poc / poc_sweep and ``svde poc``: the §4.4.1 proof-of-concept sweep, end to end on a tiny config."""

import dataclasses
import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from svde.cli import poc as cli_poc
from svde.cli.common import run_main
from svde.config import ConfigError
from svde.experiments import poc
from svde.experiments import poc_sweep
from svde.experiments.poc_sweep import summary_table
from svde.data import build_dataset
from svde.models import read_checkpoint
from svde.training.trainer import build_train_transform_for, take_subset

REPO = Path(__file__).resolve().parents[1]


def poc_main(argv):
    """``svde poc argv`` in-process, under the commands' error convention: the exit status."""
    return run_main(cli_poc.main, argv)


def tiny_config(tmp: Path, n_source: int = 12, percents=(50, 100), augment: bool = False, **extra) -> Path:
    raw = {
        "percents": list(percents),
        "seeds": [0],
        "source": {"name": "synthetic", "split": "train", "options": {"length": n_source, "height": 64, "width": 64}},
        "heldout": {"dataset": {"name": "synthetic", "split": "test",
                                "options": {"length": 3, "height": 64, "width": 64}},
                    "protocol": "synthetic", "short_side": 64, "batch_size": 3},
        "train": {
            "model": {"name": "mn_lrn4"},
            "data": {"height": 64, "width": 64, "augment": augment, "batch_size": 2, "epoch_length": n_source},
            "train": {"steps": 2, "device": "cpu", "log_every": 1, "image_every": 0, "checkpoint_every": 100},
            "val": {"every": 0, "dataset": None},
        },
        **extra,
    }
    path = tmp / "tiny.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny convolutions gain nothing from two threads, and on a busy machine two lose a lot."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


ALL_KINDS = ["mixture", "uts_only", "uts_only_si"]
RUNS = [f"p{p}_{k}_s0" for p in (50, 100) for k in ALL_KINDS]


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    # Every kind, with augmentation on: the samples consume random numbers, as in a real sweep.
    tmp = tmp_path_factory.mktemp("poc")
    config, out = tiny_config(tmp, augment=True, kinds=ALL_KINDS), tmp / "out"
    assert poc_main(["--config", str(config), "--out", str(out), "--threads", "1"]) == 0
    return config, out


def test_sweep_writes_results_and_figure(sweep):
    _, out = sweep
    summary = json.loads((out / "results.json").read_text())
    assert summary["n_source"] == 12 and summary["percents"] == [50, 100] and summary["kinds"] == ALL_KINDS
    assert sorted(r["run"] for r in summary["runs"]) == sorted(RUNS)
    for r in summary["runs"]:
        for key in ("rel", "delta1_err", "geometry_err"):
            assert math.isfinite(r[key]) and r[key] >= 0, (r["run"], key, r[key])
        assert r["delta1_err"] <= 1
        assert r["n_uts"] == round(r["percent"] / 100 * 12)
        assert r["n_utss"] == (12 - r["n_uts"] if r["kind"] == "mixture" else 0)
        assert (out / r["run"] / "last.pt").is_file() and (out / r["run"] / "result.json").is_file()
    for kind in ALL_KINDS:
        curve = summary["curves"][kind]
        assert curve["percent"] == [50, 100]
        mine = {r["percent"]: r["rel"] for r in summary["runs"] if r["kind"] == kind}
        assert curve["rel"] == [mine[50], mine[100]]  # one seed: the curve is the runs themselves
    assert sorted((d["kind"], d["percent"]) for d in summary["paired_rel_diff"]) == [
        ("uts_only", 50), ("uts_only", 100), ("uts_only_si", 50), ("uts_only_si", 100)]
    for pair in summary["paired_rel_diff"]:
        assert pair["n_images"] == 3 and math.isfinite(pair["mean"])
    base = summary["baseline"]
    assert all(math.isfinite(base[k]) for k in ("rel", "delta1_err", "geometry_err"))
    png = (out / "fig2.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000


def test_rerun_skips_finished_runs(sweep, monkeypatch, caplog):
    config, out = sweep
    caplog.set_level("INFO", logger="svde.experiments.poc_sweep")
    before = (out / "results.json").read_text()

    def no_training(*args, **kwargs):
        raise AssertionError("a finished run was trained again")

    monkeypatch.setattr(poc, "train", no_training)
    assert poc_main(["--config", str(config), "--out", str(out)]) == 0
    assert caplog.text.count("(done earlier)") == len(RUNS)  # the sweep's progress is logged
    assert json.loads((out / "results.json").read_text())["curves"] == json.loads(before)["curves"]


def test_changed_config_is_refused_not_mixed_in(sweep, capsys):
    config, out = sweep
    assert poc_main(["--config", str(config), "--out", str(out), "train.train.steps=3"]) == 1
    err = capsys.readouterr().err
    assert "another config" in err and "train.steps: 2 there, 3 now" in err


def _weights(path: Path) -> dict[str, torch.Tensor]:
    return read_checkpoint(path)["model"]


def test_at_100_percent_uts_only_is_the_mixture_run(sweep):
    """With no UTSS part the two kinds are one experiment: same config, weights and scores, bit for bit."""
    config, out = sweep
    cfg = poc.load_poc_config(config)
    runs = {r.name: r for r in poc.build_runs(cfg, 12)}
    mixture, uts_only = runs["p100_mixture_s0"].config.to_dict(), runs["p100_uts_only_s0"].config.to_dict()
    assert mixture.pop("name") != uts_only.pop("name")
    assert mixture == uts_only  # one data entry (no empty UTSS part), the same weights, loss and seed
    assert len(runs["p100_mixture_s0"].config.data.train) == 1

    results = {name: json.loads((out / name / "result.json").read_text()) for name in RUNS}
    a, b = results["p100_mixture_s0"], results["p100_uts_only_s0"]
    assert (a["rel"], a["delta1_err"], a["geometry_err"]) == (b["rel"], b["delta1_err"], b["geometry_err"])
    assert a["per_image_rel"] == b["per_image_rel"]
    wa, wb = _weights(out / a["run"] / "last.pt"), _weights(out / b["run"] / "last.pt")
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)
    summary = json.loads((out / "results.json").read_text())
    same = {(d["kind"], d["percent"]): d["identical"] for d in summary["paired_rel_diff"]}
    assert same[("uts_only", 100)] and not same[("uts_only", 50)]
    assert "0, identical on every image" in summary_table(summary)

    # The check can fail: the same data with another loss (SI alone), or other data (p = 50 %),
    # trains other weights.
    si_alone = _weights(out / "p100_uts_only_si_s0" / "last.pt")
    assert any(not torch.equal(wa[k], si_alone[k]) for k in wa)
    half = _weights(out / "p50_uts_only_s0" / "last.pt")
    assert any(not torch.equal(half[k], _weights(out / "p50_mixture_s0" / "last.pt")[k]) for k in half)


def _sweep_run(config: Path, name: str):
    cfg = poc.load_poc_config(config)
    return cfg, next(r for r in poc.build_runs(cfg, 12) if r.name == name)


def test_run_killed_before_evaluation_is_evaluated_not_retrained(sweep, tmp_path, monkeypatch):
    config, out = sweep
    cfg, run = _sweep_run(config, "p100_mixture_s0")
    (tmp_path / run.name).mkdir()
    shutil.copy(out / run.name / "last.pt", tmp_path / run.name / "last.pt")  # trained, never evaluated
    calls = []
    monkeypatch.setattr(poc, "train", lambda *a, **k: calls.append(a))
    result = poc.do_run(run, cfg, tmp_path)
    assert calls == [] and not result["reused"]
    stored = json.loads((out / run.name / "result.json").read_text())
    assert result["rel"] == pytest.approx(stored["rel"])  # same weights, same held-out set: same score


def test_checkpoint_of_another_config_is_refused(sweep, tmp_path):
    config, out = sweep
    cfg = poc.load_poc_config(config, ["train.optim.lr=0.01"])
    run = next(r for r in poc.build_runs(cfg, 12) if r.name == "p100_mixture_s0")
    (tmp_path / run.name).mkdir()
    shutil.copy(out / run.name / "last.pt", tmp_path / run.name / "last.pt")
    with pytest.raises(poc.PocError, match=r"another config \(optim.lr: 0.001 there, 0.01 now"):
        poc.do_run(run, cfg, tmp_path)


@pytest.mark.parametrize("percent", [5, 25, 33, 50, 100])
def test_partition_is_exact_and_disjoint(tmp_path, percent):
    n = 40
    cfg = poc.load_poc_config(tiny_config(tmp_path, n_source=n, percents=[percent]))
    parts = poc.partition(poc.build_source(cfg), percent)
    assert len(parts["uts"]) == round(percent / 100 * n)
    assert set(parts["uts"]).isdisjoint(parts["utss"])
    assert sorted(parts["uts"] + parts["utss"]) == list(range(n))

    mixture, uts_only = poc.build_runs(cfg, n)
    assert (mixture.kind, uts_only.kind) == ("mixture", "uts_only")
    assert mixture.config.loss == uts_only.config.loss  # eq. 5 for both
    assert (mixture.config.loss.si_weight, mixture.config.loss.ssi_weight) == (1.0, 1.0)
    assert list(mixture.config.loss.si_types) == ["absolute", "uts"]
    assert mixture.config.data.train[0] == uts_only.config.data.train[0]  # the very same UTS part
    assert len(uts_only.config.data.train) == 1
    assert len(mixture.config.data.train) == (1 if percent == 100 else 2)
    # What the trainer builds from these entries: the partition, converted per part.
    for entry, part, kind in zip(mixture.config.data.train, ("uts", "utss"), ("uts", "utss")):
        ds = take_subset(build_dataset(entry.name, entry.root, entry.split,
                                       transform=build_train_transform_for(mixture.config, entry), **entry.options),
                         entry)
        assert list(ds.indices) == parts[part]
        assert entry.weight == pytest.approx(len(parts[part]) / n)
        sample = ds[0]
        assert sample["depth_type"] == kind
        depth = cfg_source_depth(cfg, parts[part][0])
        t = sample["target"][0].numpy().astype(np.float64)
        # UTS: a constant multiple of the source depth; UTSS: an affine function of its inverse.
        x = depth if kind == "uts" else 1.0 / depth
        a, b = np.polyfit(x.ravel(), t.ravel(), 1)
        assert np.allclose(t, a * x + b, rtol=1e-4, atol=1e-5 * np.abs(t).max()) and a > 0
        if kind == "uts":
            assert abs(b) < 1e-4 * np.abs(t).max()


def cfg_source_depth(cfg, index: int) -> np.ndarray:
    src = cfg.source
    return build_dataset(src.name, src.root, src.split, **src.options)[index]["target"][0].numpy().astype(np.float64)


@pytest.mark.parametrize("override, message", [
    ("percents=[0, 50]", "percents must be"),
    ("percents=[50, 50]", "without repeats"),
    ("source.convert=uts", "plain absolute-depth dataset"),
    ("heldout.batchsize=2", "unknown config key 'heldout.batchsize'"),
    ("train.optim.lr=-1", "optim.lr must be > 0"),
    ("heldout.protocol=nope", "unknown protocol 'nope'"),
    ("heldout.short_side=8", "heldout.short_side must be null or >= 32"),  # the training config's val rule
    ("heldout.batch_size=0", "heldout.batch_size must be > 0"),
    ("kinds=[uts_only, uts_only_si]", "kinds must hold 'mixture'"),
    ("kinds=[mixture]", "kinds must hold 'mixture' and at least one baseline"),
    ("kinds=[mixture, uts_only, uts_only]", "without repeats"),
    ("kinds=[mixture, si_only]", "kinds must hold"),
    ("heldout.dataset={name: synthetic, split: train, options: {length: 12, height: 64, width: 64}}",
     "heldout.dataset is the source dataset itself"),
])
def test_bad_config_is_a_clear_error(tmp_path, override, message):
    with pytest.raises(ConfigError, match=message):
        cfg = poc.load_poc_config(tiny_config(tmp_path), [override])
        poc.build_runs(cfg, 12)


def test_heldout_settings_are_the_validation_settings_with_the_stored_keys():
    from svde.config import EvalSettings, ValConfig

    assert issubclass(poc.HeldoutConfig, EvalSettings) and issubclass(ValConfig, EvalSettings)
    # results.json stores these keys, in this order: stored runs stay comparable (do_run)
    held = dataclasses.asdict(poc.HeldoutConfig())
    assert list(held) == ["dataset", "protocol", "short_side", "batch_size", "max_images"]
    assert (held["dataset"]["split"], held["dataset"]["options"], held["batch_size"]) == ("test", {"length": 64}, 8)


def test_source_must_be_absolute(tmp_path):
    cfg = poc.load_poc_config(tiny_config(tmp_path), ["source.options.depth_type=uts"])
    with pytest.raises(poc.PocError, match="needs absolute depth"):
        poc.build_source(cfg)


def test_empty_uts_part_is_a_clear_error(tmp_path):
    cfg = poc.load_poc_config(tiny_config(tmp_path, percents=[1]))
    with pytest.raises(ConfigError, match="1 % of 12 source samples is no sample"):
        poc.build_runs(cfg, 12)


def test_shipped_configs_are_valid():
    for name in ("synthetic", "nyu"):
        cfg = poc.load_poc_config(REPO / "configs" / "poc" / f"{name}.yaml")
        runs = poc.build_runs(cfg, 1000)
        assert len(runs) == 2 * len(cfg.percents) * len(cfg.seeds)
        assert {r.config.model.name for r in runs} == {"mn_lrn4"}
        assert len({(r.config.train.steps, r.config.data.batch_size) for r in runs}) == 1  # same budget for all
        assert {(r.config.loss.si_weight, r.config.loss.ssi_weight) for r in runs} == {(1.0, 1.0)}  # eq. 5 for all


def test_si_alone_baseline_is_optional_and_only_changes_the_loss(tmp_path):
    cfg = poc.load_poc_config(tiny_config(tmp_path, percents=[25]), ["kinds=[uts_only_si, mixture, uts_only]"])
    runs = poc.build_runs(cfg, 12)
    assert [r.kind for r in runs] == ["mixture", "uts_only", "uts_only_si"]  # the mixture first, whatever the order
    eq5, si = runs[1].config.to_dict(), runs[2].config.to_dict()
    assert (eq5.pop("loss")["ssi_weight"], si.pop("loss")["ssi_weight"]) == (1.0, 0.0)
    assert {**eq5, "name": None} == {**si, "name": None}
    assert [r.kind for r in poc.build_runs(poc.load_poc_config(tiny_config(tmp_path)), 12)] == [
        "mixture", "uts_only"] * 2  # not in the default sweep


@pytest.mark.parametrize("subset", [[0.5, 0.2], [0.0, 1.5], [0.3]])
def test_training_config_rejects_bad_subset(subset):
    with pytest.raises(ConfigError, match=r"data.train.0.subset must be \[start, end\]"):
        poc.build_config({"data": {"train": [{"name": "synthetic", "subset": subset}]}})


def test_summary_over_seeds(tmp_path):
    # Two seeds at one p: means and stds over seeds, paired differences image by image.
    cfg = poc.PocConfig(percents=[10.0], seeds=[0, 1])
    per_image = {("mixture", 0): [0.30, 0.20], ("uts_only", 0): [0.40, 0.30],
                 ("mixture", 1): [0.30, 0.30], ("uts_only", 1): [0.30, 0.28]}
    results = [{"run": poc.run_name(k, 10.0, s), "kind": k, "percent": 10.0, "seed": s, "rel": sum(v) / 2,
                "delta1_err": 0.5, "geometry_err": None, "per_image_rel": v} for (k, s), v in per_image.items()]
    summary = poc_sweep.summarize(cfg, results, 20, {10.0: {"uts": 2, "utss": 18}})
    mix = summary["curves"]["mixture"]
    assert mix["rel"] == [pytest.approx(0.275)] and mix["rel_std"] == [pytest.approx(0.035355, abs=1e-5)]
    assert summary["curves"]["uts_only"]["geometry_err"] == [None]
    seed0, seed1 = summary["paired_rel_diff"]
    assert seed0["mean"] == pytest.approx(0.10) and seed0["sem"] == pytest.approx(0.0)
    assert seed1["mean"] == pytest.approx(-0.01) and seed1["sem"] == pytest.approx(0.01)
    by_p = summary["paired_rel_diff_by_p"][0]
    assert by_p["mean"] == pytest.approx(0.045) and by_p["mixture_wins"] == 1 and by_p["n_seeds"] == 2
    assert "+4.50 ± 7.78, mixture better in 1/2" in summary_table(summary)
    assert poc_sweep.plot_fig2(summary, tmp_path / "f.png").read_bytes()[:4] == b"\x89PNG"


def test_train_block_base_files_resolve_relative_to_the_config(tmp_path):
    (tmp_path / "recipe.yaml").write_text("optim: {name: adam, lr: 0.005}\ntrain: {steps: 7}\n")
    config = tiny_config(tmp_path)
    raw = yaml.safe_load(config.read_text())
    raw["train"]["base"] = "recipe.yaml"
    config.write_text(yaml.safe_dump(raw))
    cfg = poc.load_poc_config(config, ["train.optim.lr=0.002"])
    run = poc.build_runs(cfg, 12)[0]
    # base < the block's own keys < overrides
    assert (run.config.optim.name, run.config.optim.lr, run.config.train.steps) == ("adam", 0.002, 2)
