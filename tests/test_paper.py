"""Paper-table mode (svde.evaluation.paper and the paper-table command, svde.cli.paper_table), offline on tiny data."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from torch import nn

from svde.cli import paper_table as paper_table_cli
from svde.cli.common import run_main
from svde.errors import UserError
from svde.evaluation import PAPER_DATASETS, PAPER_MODELS, load_published, paper_table
from svde.evaluation.paper import (
    authors_roots,
    check_names,
    compare,
    format_markdown,
    load_weights,
    published_value,
    resolve_weights,
    write_json,
)


def test_published_numbers_with_their_sources():
    pub = load_published()
    readme, paper = pub["sources"]["readme"], pub["sources"]["paper_table3"]
    assert (readme["repo"], readme["path"]) == ("SamsungLabs/geometry-preserving-de", "README.md")
    assert paper["table"] == "Table 3" and "2009.12419" in paper["paper"]
    assert readme["mode"] == paper["mode"] == "uts"
    assert set(readme["values"]) == set(paper["values"]) == set(PAPER_MODELS)
    for model in PAPER_MODELS:  # README: all five datasets; Table 3: no ETH3D, plus KITTI
        assert set(readme["values"][model]) == set(PAPER_DATASETS)
        assert set(paper["values"][model]) == set(PAPER_DATASETS) - {"eth3d"} | {"kitti"}
    # spot checks against the two sources
    assert published_value("mn_lrn4", "nyu", "readme") == 14.64
    assert published_value("b5_lrn4", "eth3d", "readme") == 0.154
    assert published_value("lite0_lrn4", "diw", "paper_table3") == 14.30
    assert published_value("b2_lrn4", "sintel", "paper_table3") == 0.321
    assert published_value("b2_lrn4", "eth3d", "paper_table3") is None


def test_published_file_is_validated(tmp_path):
    bad = load_published()
    bad["sources"]["readme"]["values"]["mn_lrn4"]["nyu"] = "14.64"
    path = tmp_path / "p.json"
    path.write_text(json.dumps(bad))
    with pytest.raises(ValueError, match=r"p.json: sources.readme.values.mn_lrn4.nyu must be a finite number"):
        load_published(path)
    path.write_text("{")
    with pytest.raises(ValueError, match="not valid JSON"):
        load_published(path)


def _result(metric, uts, utss, n=5, skipped=1):
    return {"modes": ["uts", "utss"], "n_images": n, "n_skipped": skipped,
            "headline": {"metric": metric, "uts": uts, "utss": utss}}


def test_compare_converts_units_and_subtracts_the_published_uts_value():
    row = compare("mn_lrn4", "nyu", _result("delta1_err", 0.15, 0.12))
    assert row["measured"] == pytest.approx({"uts": 15.0, "utss": 12.0}) and row["unit"] == "%"
    assert row["published"] == {"readme": 14.64, "paper_table3": 14.03}
    assert row["difference"]["readme"] == pytest.approx(15.0 - 14.64)
    assert row["difference"]["paper_table3"] == pytest.approx(15.0 - 14.03)
    eth = compare("b5_lrn4", "eth3d", _result("abs_rel", 0.2, 0.1))
    assert eth["measured"] == {"uts": 0.2, "utss": 0.1}  # AbsRel stays a fraction, as published
    assert eth["difference"] == {"readme": pytest.approx(0.2 - 0.154), "paper_table3": None}
    none = compare("b0_lrn4", "diw", _result("whdr", None, None, n=0))
    assert none["measured"] == {"uts": None, "utss": None} and none["difference"]["readme"] is None
    with pytest.raises(ValueError, match="measured headline is 'abs_rel'"):
        compare("mn_lrn4", "nyu", _result("abs_rel", 0.1, 0.1))


def test_unknown_names_list_the_valid_ones():
    with pytest.raises(KeyError, match=r"unknown model\(s\) \['b9_lrn4'\]; valid models: mn_lrn4, lite0_lrn4, b0_lrn4"):
        check_names(["b9_lrn4"], ["nyu"])
    with pytest.raises(KeyError, match=r"unknown dataset\(s\) \['kitti'\]; valid datasets: nyu, tum, sintel, eth3d, diw"):
        check_names(["mn_lrn4"], ["kitti"])
    with pytest.raises(KeyError, match="valid datasets"):
        check_names(["mn_lrn4"], [])
    with pytest.raises(UserError, match="valid models"):
        paper_table_cli.resolve(paper_table_cli.parse_args(["--models", "mn_lrn5", "--random-weights", "--root", "nyu=/x"]))
    with pytest.raises(UserError, match="valid datasets"):
        paper_table_cli.resolve(paper_table_cli.parse_args(["--datasets", "nyuv2", "--random-weights", "--root", "nyu=/x"]))


def test_weights_resolution_and_loading(tmp_path, mn_model, mn_checkpoint):
    (tmp_path / "mn_lrn4.pth").write_bytes(b"")
    assert resolve_weights(["mn_lrn4"], weights_dir=tmp_path) == {"mn_lrn4": tmp_path / "mn_lrn4.pth"}
    assert resolve_weights(["mn_lrn4"], {"mn_lrn4": mn_checkpoint}, tmp_path) == {"mn_lrn4": mn_checkpoint}
    with pytest.raises(FileNotFoundError, match=r"weights of b0_lrn4: .*b0_lrn4.pth does not exist"):
        resolve_weights(["b0_lrn4"], weights_dir=tmp_path)
    with pytest.raises(KeyError, match="not requested"):
        resolve_weights(["b0_lrn4"], {"mn_lrn4": mn_checkpoint}, tmp_path)
    with pytest.raises(ValueError, match="no weights for b0_lrn4"):
        resolve_weights(["b0_lrn4"])
    net = load_weights("mn_lrn4", mn_checkpoint)  # an svde checkpoint
    torch.testing.assert_close(net.state_dict(), mn_model.state_dict(), rtol=0, atol=0)  # key by key
    with pytest.raises(ValueError, match="holds a mn_lrn4 model"):
        load_weights("b0_lrn4", mn_checkpoint)
    assert authors_roots(tmp_path, ["nyu", "tum", "eth3d"]) == {
        "nyu": tmp_path, "tum": tmp_path / "TUM", "eth3d": tmp_path / "ETH3D"}


def test_released_state_dict_is_loaded(tmp_path, official_state, shared_dir):
    from svde.models import load_official_checkpoint

    state = official_state("mn_lrn4")
    torch.save(state, tmp_path / "mn_lrn4.pth")
    net = load_weights("mn_lrn4", tmp_path / "mn_lrn4.pth")
    ref = load_official_checkpoint(state, "mn_lrn4")
    torch.testing.assert_close(net.state_dict(), ref.state_dict(), rtol=0, atol=0)  # key by key
    # The independent oracle: the authors' own network's output for these weights (the fixture).
    golden = np.load(shared_dir / "fixtures/official-lrn4/mn_lrn4.out-seed0-128x160.npy")
    x = torch.randn(1, 3, 128, 160, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        out = net(x).numpy()
    assert out.shape == golden.shape and np.abs(out - golden).max() <= 1e-4


# ---- end to end on tiny data ---------------------------------------------------------------------
class Tiny(nn.Module):
    def __init__(self, seed):
        super().__init__()
        torch.manual_seed(seed)
        self.conv = nn.Conv2d(3, 1, 3, stride=2, padding=1)

    def forward(self, x):
        return torch.tanh(self.conv(x)) - 1.0


@pytest.fixture(scope="module")
def tiny_roots(tmp_path_factory):
    """A tiny NYU .mat (+ splits.mat) and a tiny DIW, in the authors' data-folder layout."""
    import cv2
    import h5py
    import scipy.io

    base = tmp_path_factory.mktemp("paper")
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (2, 48, 64, 3), dtype=np.uint8)
    depths = rng.uniform(0.5, 12.0, (2, 48, 64)).astype(np.float32)
    with h5py.File(base / "nyu_depth_v2_labeled.mat", "w") as f:
        f["images"] = images.transpose(0, 3, 2, 1)
        f["rawDepths"] = depths.transpose(0, 2, 1)
    scipy.io.savemat(base / "splits.mat", {"testNdxs": np.array([[1], [2]]), "trainNdxs": np.array([[1]])})
    diw = base / "DIW"
    (diw / "DIW_test").mkdir(parents=True)
    lines = []
    for i in range(2):
        ok, buf = cv2.imencode(".jpg", rng.integers(0, 256, (40, 56, 3), dtype=np.uint8))
        (diw / "DIW_test" / f"{i}.thumb").write_bytes(buf.tobytes())
        lines += [f"./DIW_test/{i}.thumb", f"10,12,30,40,{'><'[i]},56,40"]
    (diw / "DIW_test.csv").write_text("\n".join(lines) + "\n")
    return base


def test_paper_table_end_to_end(tiny_roots, tmp_path):
    from svde.data import build_dataset
    from svde.evaluation import evaluate_model

    datasets = {"nyu": build_dataset("nyu", tiny_roots), "diw": build_dataset("diw", tiny_roots / "DIW")}
    models = {"mn_lrn4": Tiny(0), "b5_lrn4": Tiny(1)}
    table = paper_table(models, datasets)
    assert [(r["model"], r["dataset"]) for r in table["rows"]] == [
        ("mn_lrn4", "nyu"), ("mn_lrn4", "diw"), ("b5_lrn4", "nyu"), ("b5_lrn4", "diw")]
    for row in table["rows"]:
        res = evaluate_model(models[row["model"]], datasets[row["dataset"]], protocol=row["dataset"],
                             modes=("uts", "utss"))
        for mode in ("uts", "utss"):
            assert row["measured"][mode] == pytest.approx(100 * res["headline"][mode])  # both in %
        for src in ("readme", "paper_table3"):
            pub = published_value(row["model"], row["dataset"], src)
            assert row["published"][src] == pub
            assert row["difference"][src] == pytest.approx(row["measured"]["uts"] - pub)
        assert row["n_images"] == 2 and row["n_skipped"] == 0
    md = format_markdown(table)
    first = table["rows"][0]
    assert (f"| mn_lrn4 | nyu | delta1_err (%) | 2 | 0 | {first['measured']['uts']:.2f} | "
            f"{first['measured']['utss']:.2f} | 14.64 | {first['difference']['readme']:+.2f} | 14.03 | "
            f"{first['difference']['paper_table3']:+.2f} |") in md
    assert "SamsungLabs/geometry-preserving-de README.md" in md and "Table 3" in md
    path = write_json(table, tmp_path / "t.json", run_info={"models": list(models)})
    data = json.loads(path.read_text())
    assert data["run"] == {"models": ["mn_lrn4", "b5_lrn4"]} and len(data["rows"]) == 4
    assert data["sources"]["readme"]["path"] == "README.md" and "values" not in data["sources"]["readme"]
    assert all("per_image" not in r for r in data["results"])
    assert not list(tmp_path.glob(".*.tmp"))  # written atomically, nothing left behind
    with pytest.raises(ValueError, match="needs the 'uts' mode"):
        paper_table(models, datasets, modes=("utss",))


def test_command_line_with_the_authors_data_folder(tiny_roots, tmp_path, mn_checkpoint, capsys):
    def run(argv):
        return paper_table_cli.run(paper_table_cli.parse_args(argv))

    out = tmp_path / "out"
    table, md = run(["--models", "mn_lrn4", "--weights", f"mn_lrn4={mn_checkpoint}", "--datasets", "diw",
                     "--data-dir", str(tiny_roots), "--out", str(out), "--no-progress", "--device", "cpu"])
    (row,) = table["rows"]
    assert (row["model"], row["dataset"], row["published"]["readme"]) == ("mn_lrn4", "diw", 15.02)
    assert row["measured"]["uts"] in (0.0, 50.0, 100.0) and math.isfinite(row["difference"]["paper_table3"])
    assert (out / "paper_table.md").read_text().strip() == md
    data = json.loads((out / "paper_table.json").read_text())
    assert data["run"]["weights"] == {"mn_lrn4": str(mn_checkpoint)} and data["rows"][0] == row
    with pytest.raises(UserError, match="no root for nyu"):
        run(["--models", "mn_lrn4", "--random-weights", "--datasets", "nyu", "diw", "--root", f"diw={tiny_roots}"])
    with pytest.raises(UserError, match="mn_lrn4.pth does not exist"):
        run(["--models", "mn_lrn4", "--weights-dir", str(tmp_path), "--datasets", "diw", "--data-dir", str(tiny_roots)])
    # the command line: the table on stdout; bad names are one error line, before any work
    capsys.readouterr()
    assert run_main(paper_table_cli.main, ["--models", "mn_lrn4", "--random-weights", "--datasets", "diw",
                                           "--data-dir", str(tiny_roots), "--out", str(out), "--no-progress"]) == 0
    assert "| mn_lrn4 | diw |" in capsys.readouterr().out
    assert run_main(paper_table_cli.main, ["--models", "b9_lrn4", "--random-weights", "--data-dir", str(tiny_roots)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: unknown model(s) ['b9_lrn4']; valid models: mn_lrn4") and "Traceback" not in err
