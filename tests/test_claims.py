"""zgbench claims: rule kinds on synthetic records, the command end to end, --list, unknown
names, resume."""

import csv
import json
import math

import pytest

from zgbench import claims as claimlib
from zgbench.budget import Budget
from zgbench.cli import main


def _record(label, seed, value, metric="gap", task="t", status="ok", start=10.0, steps=10,
            seconds=1.0, direction="min"):
    point = {"metrics": {metric: value}, "evals": 100, "steps": steps,
             "optimizer_seconds": seconds}
    return {"optimizer": {"label": label}, "identity": {"repetition": seed}, "status": status,
            "task": {"canonical": task, "primary_metric": metric, "metrics": {metric: direction}},
            "trajectory": [{"metrics": {metric: start}, "evals": 0, "steps": 0,
                            "optimizer_seconds": 0.0}, point],
            "final": point}


def _claim(rule):
    return claimlib.Claim("c", "p", "f", "s", 2.0, "", [], [], None, 5, rule)


RATIO = claimlib.Rule("ratio", "m", ["b"], "gap", reproduced=2.0, partly=1.05)


@pytest.mark.parametrize("method_values, expected", [
    ([1.0, 1.1, 0.9, 1.0, 1.05], "reproduced"),    # baseline 3 / method 1: ratio 3
    ([2.0, 2.2, 1.9, 2.1, 2.0], "partly"),         # ratio 1.5: right way, smaller
    ([3.5, 3.0, 3.2, 3.6, 3.1], "not reproduced"),  # the method is worse
])
def test_ratio_rule(method_values, expected):
    records = [_record("b", s, 3.0) for s in range(5)]
    records += [_record("m", s, v) for s, v in enumerate(method_values)]
    verdict = claimlib.judge(_claim(RATIO), records)
    assert verdict.verdict == expected
    assert verdict.lo <= verdict.effect <= verdict.hi


def test_ratio_of_a_maximised_metric_and_time_per_step():
    rule = claimlib.Rule("ratio", "m", ["b"], "accuracy", reproduced=1.0, partly=0.98)
    records = [_record("b", s, 0.5, "accuracy", direction="max") for s in range(5)]
    records += [_record("m", s, 0.8, "accuracy", direction="max") for s in range(5)]
    assert claimlib.judge(_claim(rule), records).effect == pytest.approx(1.6)
    timing = claimlib.Rule("ratio", "m", ["b"], "seconds_per_step", reproduced=1.2, partly=1.05)
    records = [_record("b", s, 0, seconds=14.0) for s in range(3)]
    records += [_record("m", s, 0, seconds=10.0) for s in range(3)]
    verdict = claimlib.judge(_claim(timing), records)
    assert verdict.effect == pytest.approx(1.4) and verdict.verdict == "reproduced"


def test_relative_metric_and_a_method_at_zero():
    rule = claimlib.Rule("ratio", "m", ["b"], "relative", reproduced=2.0, partly=1.05)
    records = [_record("b", s, 10.0) for s in range(5)]  # never moved: relative 1
    records += [_record("m", s, 0.0) for s in range(5)]  # reached 0: an infinite ratio
    verdict = claimlib.judge(_claim(rule), records)
    assert math.isinf(verdict.effect) and verdict.verdict == "reproduced"


@pytest.mark.parametrize("hits, baseline_hits, expected", [
    (5, 0, "reproduced"), (2, 0, "partly"), (1, 1, "not reproduced"),
])
def test_success_rule(hits, baseline_hits, expected):
    rule = claimlib.Rule("success", "m", ["b"], "gap", reproduced=0.5, partly=0.1, threshold=0.5)
    records = [_record("m", s, 0.1 if s < hits else 1.0) for s in range(5)]
    records += [_record("b", s, 0.1 if s < baseline_hits else 2.0) for s in range(5)]
    assert claimlib.judge(_claim(rule), records).verdict == expected


def test_failed_runs_give_no_verdict():
    records = [_record("b", s, 3.0) for s in range(3)] + [_record("m", 0, 1.0, status="failed")]
    verdict = claimlib.judge(_claim(RATIO), records)
    assert verdict.verdict == "not run" and "failed" in verdict.failures[0]


def test_the_claims_file_parses_and_names_its_sources(registry):
    claims = claimlib.load(claimlib.default_path(), registry)
    names = [c.name for c in claims]
    assert len(names) == len(set(names)) >= 8
    for claim in claims:
        assert claim.paper and claim.figure and claim.sentence and claim.setting
        if claim.rule.kind in ("gradcheck", "match"):  # a bias, a difference: smaller is better
            assert claim.rule.reproduced <= claim.rule.partly
        else:
            assert claim.rule.reproduced >= claim.rule.partly


def test_list_and_unknown_claim(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "250")
    assert main(["claims", "--list"]) == 0
    out = capsys.readouterr().out
    assert "zerograds-toy" in out and "global minimum at 4.0" in out
    assert main(["claims", "--only", "nope"]) == 2
    err = capsys.readouterr().err
    assert "unknown claim 'nope'" in err and "prdpt-step-progress" in err


def test_only_end_to_end_and_resume(tmp_path, capsys):
    """The cheapest claim through the harness; a second call resumes (nothing reruns), and a
    run deleted as by an interruption is the only one run again."""
    out = tmp_path / "claims"
    argv = ["claims", "--only", "prdpt-step-progress", "--out", str(out)]
    assert main(argv) == 0
    with open(out / "claims.csv", encoding="utf-8") as handle:
        (row,) = list(csv.DictReader(handle))
    assert row["claim"] == "prdpt-step-progress" and row["seeds"] == "5"
    assert row["verdict"] in claimlib.VERDICTS
    assert (out / "claims" / "prdpt-step-progress.png").stat().st_size > 5000
    records = sorted((out / "records").rglob("*.json"))
    assert len(records) == 10
    capsys.readouterr()
    records[0].unlink()  # an interrupted run: one record missing
    assert main(argv) == 0
    assert "1 done, 9 skipped" in capsys.readouterr().out.replace("\n", " ")
    with open(out / "claims.csv", encoding="utf-8") as handle:
        assert list(csv.DictReader(handle))[0]["effect"] == row["effect"]


def test_publish_merges_into_a_published_folder_the_report_reads(tmp_path):
    """--publish DIR: the claim's row joins the other claims' rows (file order kept), its plot
    lands at the top of DIR, runs.csv gets one row per run (a rerun replaces, never doubles)
    and machine.json the machine; the report reads the published layout."""
    dst = tmp_path / "published"
    dst.mkdir()
    (dst / "claims.csv").write_text("claim,verdict\nzerograds-toy,reproduced\n"
                                    "deepzero-feature-reuse,not reproduced\n")
    argv = ["claims", "--only", "prdpt-step-progress", "--out", str(tmp_path / "out"),
            "--publish", str(dst)]
    assert main(argv) == 0
    rows = claimlib.read_csv(dst / "claims.csv")
    assert [r["claim"] for r in rows] == ["zerograds-toy", "prdpt-step-progress",
                                          "deepzero-feature-reuse"]
    assert (dst / "prdpt-step-progress.png").stat().st_size > 5000
    runs = list(csv.DictReader(open(dst / "runs.csv", encoding="utf-8")))
    assert len(runs) == 10 and {r["optimizer"] for r in runs} == {"smoothing", "fd"}
    machines = json.loads((dst / "machine.json").read_text())
    assert len(machines) == 1
    assert main(argv) == 0  # resumed and published again: nothing doubles
    assert len(list(csv.DictReader(open(dst / "runs.csv", encoding="utf-8")))) == 10
    assert len(json.loads((dst / "machine.json").read_text())) == 1
    # claims sharing runs hand the same records over twice in one call: still one row a run
    from zgbench.store import ResultStore

    records = list(ResultStore(tmp_path / "out" / "records"))
    claimlib.publish(tmp_path / "out", dst, ["prdpt-step-progress"], records * 2, [])
    assert len(list(csv.DictReader(open(dst / "runs.csv", encoding="utf-8")))) == 10
    html = claimlib.html_section(dst, tmp_path / "report")
    assert "prdpt-step-progress.png" in html
    assert (tmp_path / "report" / "claims" / "prdpt-step-progress.png").is_file()
    # a report of other results opens with these claims (--claims), verdict and interval first
    from zgbench import report

    page = report.build(tmp_path / "out" / "records", tmp_path / "rep", claims=dst).read_text()
    assert '<section id="claims">' in page and "<th>measured</th>" in page
    assert 'href="#claims"' in page and "zerograds-toy" in page
    assert main(["report", str(tmp_path / "out" / "records"), "-o", str(tmp_path / "r2"),
                 "--claims", str(tmp_path)]) == 2  # no claims.csv there


def test_report_has_a_claims_section(tmp_path):
    from zgbench import report

    out = tmp_path / "claims"
    assert main(["claims", "--only", "prdpt-step-progress", "--out", str(out)]) == 0
    page = report.build(out / "records", tmp_path / "report").read_text(encoding="utf-8")
    assert '<section id="claims">' in page and "prdpt-step-progress" in page
    assert (tmp_path / "report" / "claims" / "prdpt-step-progress.png").is_file()
    plain = report.build(out / "records", tmp_path / "plain")  # claims.csv absent: no section
    (out / "claims.csv").unlink()
    assert '<section id="claims">' not in report.build(out / "records", tmp_path / "p2").read_text()
    assert plain.exists()


def test_identical_rule_needs_bitwise_equal_numbers():
    rule = claimlib.Rule("ratio", "m", ["b"], "seconds_per_step", reproduced=1.5, partly=1.1,
                         identical=True)
    same = [_record("b", s, 0.5, seconds=2.0) for s in range(5)]
    same += [_record("m", s, 0.5, seconds=1.0) for s in range(5)]
    verdict = claimlib.judge(_claim(rule), same)
    assert verdict.verdict == "reproduced" and verdict.detail["seeds with different numbers"] == 0
    differ = same[:5] + [_record("m", s, 0.5 + (s == 3) * 1e-12, seconds=1.0) for s in range(5)]
    verdict = claimlib.judge(_claim(rule), differ)
    assert verdict.effect == pytest.approx(2.0) and verdict.verdict == "not reproduced"
    assert verdict.detail["seeds with different numbers"] == 1


def test_identical_rule_with_rtol_allows_reassociation_only():
    """rtol: final metrics within the tolerance count as the same numbers (a checkpoint that
    differs in evaluations does not matter); a difference beyond it is not reproduced."""
    rule = claimlib.Rule("ratio", "m", ["b"], "seconds_per_step", reproduced=1.5, partly=1.1,
                         identical=True, rtol=0.01)
    base = [_record("b", s, 0.5, seconds=2.0) for s in range(5)]
    close = base + [_record("m", s, 0.5 * (1 + 1e-3 * s), seconds=1.0) for s in range(5)]
    for r in close[5:]:
        r["trajectory"][0]["evals"] = 7  # reuse charges per layer call: other checkpoints
    verdict = claimlib.judge(_claim(rule), close)
    assert verdict.verdict == "reproduced" and verdict.detail["seeds with different numbers"] == 0
    far = base + [_record("m", s, 0.5 * (1 + 0.05 * (s == 2)), seconds=1.0) for s in range(5)]
    verdict = claimlib.judge(_claim(rule), far)
    assert verdict.verdict == "not reproduced"
    assert verdict.detail["seeds with different numbers"] == 1
    assert "within rtol 0.01" in claimlib.describe_rule(rule)


def test_csv_keeps_the_rows_of_claims_not_run_now(tmp_path):
    """--only A then --only B: claims.csv holds both, in the claims file's order."""
    rule = claimlib.Rule("ratio", "m", ["b"], "gap", reproduced=2.0, partly=1.05)
    first, second = (claimlib.Claim(n, "p", "f", "s", 2.0, "", [], [], None, 5, rule)
                     for n in ("first", "second"))
    path = tmp_path / "claims.csv"
    claimlib.write_csv([first, second], [claimlib.Verdict("second", 3, 2, 4, "reproduced", 5)],
                       {"second": 1.0}, path)
    claimlib.write_csv([first, second], [claimlib.Verdict("first", 1, 0.5, 2, "partly", 5)],
                       {"first": 2.0}, path)
    rows = claimlib.read_csv(path)
    assert [r["claim"] for r in rows] == ["first", "second"]
    assert rows[1]["verdict"] == "reproduced" and rows[0]["seconds"] == "2.0"
    claimlib.write_csv([first, second], [claimlib.Verdict("first", 9, 8, 10, "reproduced", 5)],
                       {"first": 3.0}, path)
    rows = claimlib.read_csv(path)
    assert len(rows) == 2 and rows[0]["effect"] == "9" and rows[1]["effect"] == "3"


@pytest.mark.parametrize("rel_bias, expected", [
    ([0.03, 0.05, 0.04, 0.06, 0.05], "reproduced"),   # the noise floor (0.05) explains it
    ([0.2, 0.22, 0.18, 0.21, 0.2], "partly"),         # ~0.19 of real bias
    ([0.9, 1.0, 0.95, 1.0, 0.97], "not reproduced"),  # fd on a plateau: no gradient at all
])
def test_gradcheck_rule(rel_bias, expected):
    from zgbench.gradcheck import Row

    rule = claimlib.Rule("gradcheck", "m", [], "rel_bias", reproduced=0.1, partly=0.25)
    rows = [Row("t", "m", "ok", point=i, rel_bias=b, bias_floor=0.05, reference_norm=1.0,
                reference_rel_stderr=0.01) for i, b in enumerate(rel_bias)]
    verdict = claimlib.judge_gradcheck(_claim(rule), rows)
    assert verdict.verdict == expected
    assert verdict.lo <= verdict.effect <= verdict.hi
    skipped = [Row("t", "m", "skipped", "no estimate_gradient")]
    assert claimlib.judge_gradcheck(_claim(rule), skipped).verdict == "not run"


@pytest.mark.parametrize("hits, other_hits, expected", [
    ([1, 1, 1, 0, 0, 0, 0, 0, 0, 0], [1, 1, 0, 1, 0, 0, 0, 0, 0, 0], "reproduced"),  # 0.3 vs 0.3
    ([1, 1, 1, 1, 0, 0, 0, 0, 0, 0], [1, 1, 0, 0, 0, 0, 0, 0, 0, 0], "partly"),      # 0.4 vs 0.2
    ([1] * 10, [0] * 10, "not reproduced"),
])
def test_match_rule(hits, other_hits, expected):
    rule = claimlib.Rule("match", "m", ["b"], "gap", reproduced=0.1, partly=0.2, threshold=0.5)
    records = [_record("m", s, 0.1 if h else 2.0) for s, h in enumerate(hits)]
    records += [_record("b", s, 0.1 if h else 2.0) for s, h in enumerate(other_hits)]
    assert claimlib.judge(_claim(rule), records).verdict == expected


def test_effect_curve_meets_runs_at_equal_shares_of_their_own_budgets():
    """A gradient-charged run (adam: no evaluations) and an evaluation-charged one are compared
    at equal shares of the budget: halfway, adam's value is its halfway value, not its final
    one (by evaluations it would sit at its end from the first point on)."""
    rule = claimlib.Rule("ratio", "m", ["b"], "gap", reproduced=1.0, partly=0.5)
    budget = Budget(evals=1000, grads=100)

    def record(label, counter, values):
        points = [{"metrics": {"gap": v}, "evals": 0, "grads": 0, "steps": i,
                   "optimizer_seconds": 0.0} for i, v in enumerate(values)]
        for point, spent in zip(points, (0, 50, 100) if counter == "grads" else (0, 500, 1000)):
            point[counter] = spent
        return {"optimizer": {"label": label}, "identity": {"repetition": 0}, "status": "ok",
                "task": {"canonical": "t", "primary_metric": "gap", "metrics": {"gap": "min"}},
                "trajectory": points, "final": points[-1]}

    claim = claimlib.Claim("c", "p", "f", "s", 1.0, "", [], [], budget, 1, rule)
    records = [record("b", "grads", [8.0, 4.0, 1.0]), record("m", "evals", [8.0, 2.0, 1.0])]
    xs, ys = claimlib.effect_curve(claim, records, points=2)
    assert list(xs) == [0.5, 1.0]
    assert ys[0] == pytest.approx(4.0 / 2.0) and ys[1] == pytest.approx(1.0)
