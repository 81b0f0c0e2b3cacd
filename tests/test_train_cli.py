"""The ending every ``mmd train-*`` command shares (daemon.commands.train_common): an unwritable output
file is exit 1 with one line naming it, JSON mode prints one object, and the progress line is
throttled but always drawn (and ended) at the last step."""

from __future__ import annotations

import io
import json

from daemon.cli import main as mmd_main
from daemon.commands.train_common import progress_line, save_and_report


class _Model:
    def __init__(self) -> None:
        self.saved: list[str] = []

    def save(self, path: str) -> None:
        if path.startswith("/nonexistent"):
            raise FileNotFoundError(2, "No such file or directory", path)
        self.saved.append(path)


def test_save_and_report_json_table_and_unwritable(tmp_path, capsys) -> None:
    m = _Model()
    out = str(tmp_path / "m.npz")
    assert save_and_report("train-x", m, out, True, {"out": out, "auc": 0.7}, lambda: print("TABLE")) == 0
    assert m.saved == [out] and json.loads(capsys.readouterr().out) == {"out": out, "auc": 0.7}
    assert save_and_report("train-x", m, out, False, {}, lambda: print("TABLE")) == 0
    assert capsys.readouterr().out == "TABLE\n"
    assert save_and_report("train-x", m, "/nonexistent/m.npz", True, {"a": 1}, lambda: print("TABLE")) == 1
    got = capsys.readouterr()
    assert got.out == "" and got.err == "mmd train-x: cannot write '/nonexistent/m.npz': No such file or directory\n"


def test_progress_line_is_throttled_and_ends_the_line() -> None:
    buf = io.StringIO()
    p = progress_line(lambda s, t, v: f"step {s}/{t} v={v:.1f}", buf, every_s=3600.0)
    for s in range(1, 6):
        p(s, 5, float(s))
    # the first call draws (nothing drawn yet), the throttle hides 2..4, the last step always draws
    assert buf.getvalue() == "\rstep 1/5 v=1.0\rstep 5/5 v=5.0\n"


def test_train_rl_unwritable_out_exits_1(capsys) -> None:
    rc = mmd_main(["train-rl", "--episodes", "2", "--paths", "10", "--out", "/nonexistent/dir/p.npz"])
    err = capsys.readouterr().err
    assert rc == 1 and "mmd train-rl: cannot write '/nonexistent/dir/p.npz'" in err


def test_model_files_are_written_atomically(tmp_path) -> None:
    from daemon.models import npzfile

    good = tmp_path / "m.bin"
    npzfile.write_atomic(good, b"v1")
    assert good.read_bytes() == b"v1" and sorted(p.name for p in tmp_path.iterdir()) == ["m.bin"]
    npzfile.write_atomic(good, b"v2")  # replaces
    assert good.read_bytes() == b"v2"
    target = tmp_path / "adir"
    target.mkdir()  # the final rename onto a directory fails: the error surfaces, no .tmp is left behind
    try:
        npzfile.write_atomic(target, b"x")
    except OSError:
        pass
    else:
        raise AssertionError("writing over a directory must fail")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["adir", "m.bin"] and good.read_bytes() == b"v2"
