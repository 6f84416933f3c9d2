"""The typed config: composition of YAML files, dotted overrides, and errors that name the key."""

import copy
from pathlib import Path

import pytest
import torch

from svde.config import Config, ConfigError, apply_override, build_config, load_config, merge
from svde.models.released import RELEASED
from svde.training.optim import build_optimizer, build_scheduler, lr_factor

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "configs"


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_merge_is_deep_for_dicts_and_replaces_lists():
    base = {"a": {"x": 1, "y": [1, 2]}, "b": 1}
    out = merge(base, {"a": {"y": [3]}, "c": 2})
    assert out == {"a": {"x": 1, "y": [3]}, "b": 1, "c": 2}
    assert base == {"a": {"x": 1, "y": [1, 2]}, "b": 1}  # inputs untouched


def test_base_files_compose_in_order_then_file_then_overrides(tmp_path):
    write(tmp_path / "base/model.yaml", "model: {name: b0_lrn4}\ntrain: {steps: 5, seed: 1}\n")
    write(tmp_path / "base/train.yaml", "train: {steps: 7}\noptim: {lr: 1e-2}\n")
    exp = write(tmp_path / "exp/run.yaml", "base: [../base/model.yaml, ../base/train.yaml]\ntrain: {seed: 3}\n")
    cfg = load_config(exp, ["optim.lr=0.5", "data.train.0.weight=2"])
    assert cfg.name == "run"  # the file stem
    assert cfg.model.name == "b0_lrn4"
    assert (cfg.train.steps, cfg.train.seed) == (7, 3)
    assert cfg.optim.lr == 0.5  # "1e-2" in YAML is a string to PyYAML; the override wins anyway
    assert cfg.data.train[0].weight == 2.0 and cfg.data.train[0].name == "synthetic"


def test_yaml_exponent_without_dot_reads_as_float(tmp_path):
    cfg = load_config(write(tmp_path / "c.yaml", "optim: {lr: 3e-4}\n"))
    assert cfg.optim.lr == pytest.approx(3e-4) and isinstance(cfg.optim.lr, float)


@pytest.mark.parametrize("raw, needle", [
    ({"trian": {}}, "'trian' (did you mean 'train'?)"),
    ({"train": {"stepz": 3}}, "'train.stepz' (did you mean 'steps'?)"),
    ({"data": {"train": [{"nmae": "synthetic"}]}}, "'data.train.0.nmae'"),
    ({"optim": {"lr": "fast"}}, "optim.lr: expected float"),
    ({"train": {"steps": 2.5}}, "train.steps: expected int"),
    ({"train": {"compile": 1}}, "train.compile: expected bool"),
    ({"model": {"name": "resnet50"}}, "model.name 'resnet50' is not one of mn_lrn4"),
    ({"data": {"train": [{"name": "imagenet"}]}}, "data.train.0.name 'imagenet' is not one of"),
    ({"data": {"height": 100}}, "data.height must be a positive multiple of 32"),
    ({"optim": {"name": "lamb"}}, "optim.name 'lamb' is not one of ranger"),
    ({"optim": {"schedule": "step"}}, "optim.schedule 'step' is not one of"),
    ({"loss": {"si_types": ["utss"]}}, "loss.si_types"),
    ({"loss": {"si_weight": 0, "ssi_weight": 0}}, "not both 0"),
    ({"train": {"amp": "fp8"}}, "train.amp 'fp8' is not one of none"),
    ({"data": {"colour_on": "gpu"}}, "data.colour_on 'gpu' is not one of auto, workers, device"),
    ({"data": {"train": [{"convert": "metric"}]}}, "data.train.0.convert"),
    # issue 13: every value checked before the first step, not at the end of the run
    ({"optim": {"lr": float("inf")}}, "optim.lr must be a finite number, got inf"),
    ({"optim": {"lr": 0}}, "optim.lr must be > 0 and finite"),
    ({"optim": {"weight_decay": -0.1}}, "optim.weight_decay must be >= 0"),
    ({"loss": {"si_weight": float("nan")}}, "loss.si_weight must be a finite number"),
    ({"val": {"max_images": 0}}, "val.max_images must be null (all) or >= 1, got 0"),
    ({"val": {"metric": "foo"}}, "val.metric 'foo' is not a validation metric; valid: delta1_err"),
    ({"val": {"metric": "delta1"}}, "(did you mean 'delta1_err'?)"),
    ({"val": {"protocol": "nyuu"}}, "val.protocol 'nyuu' is not a protocol (did you mean 'nyu'?)"),
    ({"val": {"dataset": {"name": "diw"}}}, "val.metric 'delta1_err' is not a validation metric; valid: whdr"),
    ({"val": {"dataset": {"name": "redweb"}}}, "val.dataset.name 'redweb' has no evaluation protocol"),
    ({"val": {"short_side": 8}}, "val.short_side must be null or >= 32"),
    ({"val": {"batch_size": 0}}, "val.batch_size must be > 0, got 0"),
    ({"val": {"dataset": {"name": "synthetic", "subset": [0.5, 0.2]}}}, "val.dataset.subset must be [start, end]"),
    ({"train": {"device": "tpu"}}, "train.device must be one of auto, cpu, cuda, cuda:N, mps, got 'tpu'"),
    ({"data": {"train": [{"options": {"lenght": 3}}]}},
     "data.train.0.options.lenght: dataset 'synthetic' has no option 'lenght' (did you mean 'length'?)"),
    ({"val": {"dataset": {"name": "synthetic", "options": {"depth_typ": "uts"}}}}, "val.dataset.options.depth_typ"),
    ({"train": {"ddp_timeout_s": 0}}, "train.ddp_timeout_s must be > 0"),
    ({"train": {"diverge_factor": 1.0}}, "train.diverge_factor must be null (off) or > 1"),
    ({"train": {"diverge_patience": 0}}, "train.diverge_patience must be >= 1"),
    ({"train": {"seed": -1}}, "train.seed must be >= 0"),
])
def test_bad_keys_and_values_are_named(raw, needle):
    with pytest.raises(ConfigError) as err:
        build_config(raw)
    assert needle in str(err.value)


def test_one_message_per_key_and_valid_values_pass():
    with pytest.raises(ConfigError) as err:
        build_config({"optim": {"lr": float("nan")}})
    assert str(err.value).count("optim.lr") == 1
    cfg = build_config({"val": {"metric": "abs_rel", "protocol": "nyu", "max_images": 1},
                        "train": {"device": "cuda:1", "diverge_factor": None}})
    assert cfg.val.metric == "abs_rel" and cfg.train.diverge_factor is None  # names only: no CUDA needed here


def test_build_config_leaves_its_input_untouched():
    raw = {"model": {"name": "mn_lrn4"}}
    build_config(raw, ["model.name=b0_lrn4"])
    assert raw == {"model": {"name": "mn_lrn4"}}


def test_unknown_key_error_lists_valid_keys():
    with pytest.raises(ConfigError, match="valid keys here: steps, seed"):
        build_config({"train": {"nope": 1}})


@pytest.mark.parametrize("override, needle", [
    ("train.steps", "must look like key.sub=value"),
    ("data.train.3.root=/x", "not an index of a list of 1 items"),
    ("train..steps=3", "empty key"),
    ("train.stpes=3", "'train.stpes' (did you mean 'steps'?)"),
])
def test_bad_overrides_are_named(override, needle):
    with pytest.raises(ConfigError) as err:
        build_config({}, [override])
    assert needle in str(err.value)


def test_override_parses_yaml_values():
    raw = apply_override({}, "optim.grad_clip=null")
    raw = apply_override(raw, "loss.si_types=[uts]")
    cfg = build_config(raw)
    assert cfg.optim.grad_clip is None and cfg.loss.si_types == ["uts"]


def test_base_loop_and_missing_files_are_errors(tmp_path):
    write(tmp_path / "a.yaml", "base: b.yaml\n")
    write(tmp_path / "b.yaml", "base: a.yaml\n")
    with pytest.raises(ConfigError, match="loop"):
        load_config(tmp_path / "a.yaml")
    write(tmp_path / "c.yaml", "base: [missing.yaml]\n")
    with pytest.raises(ConfigError, match="missing.yaml does not exist"):
        load_config(tmp_path / "c.yaml")
    write(tmp_path / "d.yaml", "- just\n- a list\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(tmp_path / "d.yaml")


def test_round_trip_through_plain_dict():
    cfg = build_config({"model": {"name": "b1_lrn4"}, "train": {"steps": 9}})
    again = build_config(cfg.to_dict())
    assert again == cfg and isinstance(again, Config)


def test_quickstart_config_is_cpu_synthetic_mn():
    cfg = load_config(CONFIGS / "quickstart.yaml")
    assert cfg.name == "quickstart" and cfg.model.name == "mn_lrn4"
    assert [e.name for e in cfg.data.train] == ["synthetic"] and cfg.val.dataset.name == "synthetic"
    assert cfg.train.amp == "none" and cfg.model.encoder_weights is None  # nothing to download


@pytest.mark.parametrize("name", list(RELEASED))  # configs/paper/: the paper's (released) models
def test_paper_configs_follow_the_recipe(name):
    cfg = load_config(CONFIGS / "paper" / f"{name}.yaml")
    assert cfg.model.name == name and cfg.model.encoder_weights == "imagenet"
    assert cfg.data.batch_size == (16 if name in ("b3_lrn4", "b4_lrn4", "b5_lrn4") else 32)
    assert (cfg.data.height, cfg.data.width) == (384, 512)
    assert cfg.optim.name == "ranger" and cfg.optim.lr == pytest.approx(1e-3) and cfg.optim.schedule == "constant"
    assert [e.name for e in cfg.data.train] == ["redweb", "diml", "megadepth", "stereo_folder"]
    assert (cfg.loss.si_weight, cfg.loss.ssi_weight) == (1.0, 1.0) and set(cfg.loss.si_types) == {"absolute", "uts"}


def test_lr_factor_warmup_and_schedules():
    from svde.config import OptimConfig

    cfg = OptimConfig(schedule="cosine", warmup_steps=4, min_lr_ratio=0.1)
    assert lr_factor(0, cfg, 14) == 0.25 and lr_factor(2, cfg, 14) == 0.75
    assert lr_factor(4, cfg, 14) == pytest.approx(1.0)
    assert lr_factor(9, cfg, 14) == pytest.approx(0.1 + 0.9 * 0.5)
    assert lr_factor(14, cfg, 14) == pytest.approx(0.1)
    assert lr_factor(5, OptimConfig(), 10) == 1.0


def test_ranger_state_dict_round_trip():
    """Ranger's lookahead ("slow") weights live in its per-parameter state and survive a save/load."""
    from svde.config import OptimConfig

    torch.manual_seed(0)
    cfg = OptimConfig(name="ranger", lr=1e-2, schedule="linear")

    def make():
        torch.manual_seed(0)
        net = torch.nn.Linear(4, 1)
        opt = build_optimizer(net.parameters(), cfg)
        return net, opt, build_scheduler(opt, cfg, total_steps=20)

    def steps(net, opt, sched, n, seed):
        g = torch.Generator().manual_seed(seed)
        for _ in range(n):
            x = torch.randn(8, 4, generator=g)
            opt.zero_grad()
            net(x).pow(2).mean().backward()
            opt.step()
            sched.step()

    net_a, opt_a, sched_a = make()
    steps(net_a, opt_a, sched_a, 7, seed=1)  # 7: past a lookahead sync (k=6), mid-way to the next
    # deepcopy: state dicts hold references to the live tensors (a checkpoint file is a copy)
    saved = copy.deepcopy({"net": net_a.state_dict(), "opt": opt_a.state_dict(), "sched": sched_a.state_dict()})
    assert "slow_buffer" in next(iter(saved["opt"]["state"].values()))
    steps(net_a, opt_a, sched_a, 6, seed=2)

    net_b, opt_b, sched_b = make()
    net_b.load_state_dict(saved["net"])
    opt_b.load_state_dict(saved["opt"])
    sched_b.load_state_dict(saved["sched"])
    steps(net_b, opt_b, sched_b, 6, seed=2)
    for a, b in zip(net_a.parameters(), net_b.parameters()):
        assert torch.equal(a, b)
    assert opt_b.param_groups[0]["lr"] == pytest.approx(opt_a.param_groups[0]["lr"])
