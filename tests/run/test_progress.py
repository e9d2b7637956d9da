"""Progress for a log file (issue 23): when stdout is not a terminal, every long stage
prints a plain line every few seconds with its count, percentage, elapsed time and ETA,
and one line when it completes; the end-of-run table of stage times."""

from __future__ import annotations

import re
import time

from fluxscale.parallel import PlainProgress, format_duration, progress_bar, run_tasks, working
from fluxscale.run.summary import stage_time_table


def test_plain_lines_count_percent_and_eta_from_the_rate_so_far():
    clock = [0.0]
    lines: list[str] = []
    p = PlainProgress(interval=1000, write=lines.append, clock=lambda: clock[0])
    with p:
        t = p.add_task("train: member-epochs", total=600)
        clock[0] = 57.0
        p.update(t, completed=240)
        p.tick()  # what the background thread does every interval
        clock[0] = 140.0
        p.update(t, completed=600)
        p.update(t, completed=600)  # completion is written once
    # 57 s for 240 of 600 → 360 left at 0.2375 s each = 85.5 s → 1:26
    assert lines == ["train: member-epochs 240/600, 40%, 0:57 elapsed, ETA 1:26",
                     "train: member-epochs 600/600, 100%, done in 2:20"]


def test_plain_lines_without_a_total_or_before_the_first_unit():
    clock = [0.0]
    lines: list[str] = []
    p = PlainProgress(interval=1000, write=lines.append, clock=lambda: clock[0])
    a = p.add_task("validate: checking every value")
    b = p.add_task("infer: blocks", total=12)
    p.add_task("nothing to do", total=0)  # finished at once, never printed
    clock[0] = 3725.0
    p.tick()
    assert lines == ["validate: checking every value, 1:02:05 elapsed", "infer: blocks 0/12, 0%, 1:02:05 elapsed"]
    assert a == 0 and b == 1


def test_format_duration():
    assert [format_duration(s) for s in (0, 59.4, 59.6, 86, 3600, 7322)] == ["0:00", "0:59", "1:00", "1:26",
                                                                            "1:00:00", "2:02:02"]


def test_run_tasks_prints_periodic_plain_lines_when_stdout_is_not_a_terminal(capsys, monkeypatch):
    """pytest's captured stdout is not a terminal: the plain mode is chosen by itself; the
    lines carry counts that only grow, and the last says all 6 are done."""
    monkeypatch.delenv("FLUXSCALE_PROGRESS", raising=False)
    monkeypatch.setenv("FLUXSCALE_PROGRESS_INTERVAL", "0.1")
    assert isinstance(progress_bar(True), PlainProgress)
    assert not isinstance(progress_bar(False), PlainProgress)
    out = run_tasks(time.sleep, [0.12] * 6, label="demo: sleeps", show_progress=True)
    assert out == [None] * 6
    lines = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("demo: sleeps")]
    counts = [int(re.match(r"demo: sleeps (\d+)/6", ln).group(1)) for ln in lines]
    assert len(lines) >= 3 and counts == sorted(counts) and counts[-1] == 6
    assert lines[-1].startswith("demo: sleeps 6/6, 100%, done in 0:0")
    assert any("ETA" in ln for ln in lines[:-1])


def test_working_prints_elapsed_lines_in_plain_mode_and_nothing_when_disabled(capsys, monkeypatch):
    monkeypatch.setenv("FLUXSCALE_PROGRESS", "plain")
    monkeypatch.setenv("FLUXSCALE_PROGRESS_INTERVAL", "0.05")
    with working("validate: checking", True):
        time.sleep(0.3)
    with working("quiet", False):
        time.sleep(0.1)
    out = capsys.readouterr().out
    assert re.search(r"^validate: checking, 0:00 elapsed$", out, re.M) and "quiet" not in out


def test_stage_time_table():
    t = {"data": 19.2, "validate": 0.0, "integrals": 2.91, "bridges": 46.52, "train": 407.2, "total": 476.0}
    rows = stage_time_table(t, skipped=["validate"]).splitlines()
    head, vals = rows[0].split(), rows[1].split()
    assert head == ["stage", "data", "validate", "integrals", "bridges", "train", "infer", "evaluate", "total"]
    assert vals == ["m:ss", "0:19", "skip", "0:03", "0:47", "6:47", "-", "-", "7:56"]
