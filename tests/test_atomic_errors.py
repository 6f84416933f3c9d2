"""svde.atomic (durable writes, tolerant JSON lines) and the CLI error convention."""

import json

import pytest

from svde import atomic
from svde.cli.common import run_main
from svde.config import ConfigError
from svde.errors import RunFailed


def test_atomic_path_keeps_old_file_when_writer_fails(tmp_path):
    target = tmp_path / "x.txt"
    atomic.write_text(target, "old")
    with pytest.raises(RuntimeError):
        with atomic.atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["x.txt"]  # no temporary left


def test_write_json_refuses_non_finite(tmp_path):
    with pytest.raises(ValueError):
        atomic.write_json(tmp_path / "r.json", {"a": float("nan")})
    assert not (tmp_path / "r.json").exists()


def test_read_jsonl_drops_only_a_torn_last_line(tmp_path):
    log = tmp_path / "metrics.jsonl"
    log.write_text(json.dumps({"step": 1}) + "\n" + json.dumps({"step": 2}) + "\n" + '{"step": 3, "lo')
    assert atomic.read_jsonl(log) == [{"step": 1}, {"step": 2}]
    log.write_text('{"step": 1}\n{bad\n{"step": 3}\n')
    with pytest.raises(ValueError, match="metrics.jsonl:2"):
        atomic.read_jsonl(log)
    assert atomic.read_jsonl(tmp_path / "missing.jsonl") == []


def test_remove_stale_temporaries(tmp_path):
    (tmp_path / ".last.pt.abc123.tmp").write_bytes(b"x")
    (tmp_path / ".config.yaml.q.tmp").write_bytes(b"x")
    (tmp_path / "last.pt").write_bytes(b"keep")
    removed = atomic.remove_stale_temporaries(tmp_path, "last.pt")
    assert [p.name for p in removed] == [".last.pt.abc123.tmp"]
    atomic.remove_stale_temporaries(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt"]


@pytest.mark.parametrize("exc, code", [(ConfigError("optim.lr: expected a finite number > 0, got inf"), 2),
                                       (RunFailed("diverged"), 1),
                                       (FileNotFoundError(2, "No such file or directory", "nope.pt"), 2)])
def test_run_main_prints_one_error_line(capsys, exc, code):
    def main(argv):
        raise exc
    assert run_main(main, []) == code
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ") and "Traceback" not in err
    if isinstance(exc, OSError):
        assert "nope.pt" in err


def test_run_main_debug_reraises_and_bugs_keep_their_traceback():
    def main(argv):
        raise ConfigError("bad")
    with pytest.raises(ConfigError):
        run_main(main, ["--debug"])

    def buggy(argv):
        raise KeyError("internal")
    with pytest.raises(KeyError):
        run_main(buggy, [])


def test_run_main_strips_debug_and_passes_argv():
    seen = []
    assert run_main(lambda argv: seen.append(argv) or 0, ["a", "--debug", "b"]) == 0
    assert seen == [["a", "b"]]
