"""The Markdown page of ``scripts/gpu_check.py``: one table per section, the papers' figures
beside the paper-size steps, and every failure with its traceback at the end."""

from __future__ import annotations

from typing import Any

#: What the seed papers report for the paper-size steps (shown beside the measurements).
PAPERS = {
    "mesh-fit-step": "ZeroGrads: surrogate optimisation of about 35k interlinked variables "
                     "(mesh fitting); no time per step published",
    "cge-step": "DeepZero: about 1 h per ResNet-20 CIFAR-10 epoch of sparse CGE (90% "
                "sparsity, feature reuse) on their GPUs; reuse about 2x faster per step",
    "radiosity-step": "Semi-gradients (Cho and Cho): 25-30% less time per step than the "
                      "full gradient on an A100, 2^14 points, M = 32",
}


def fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, bool):
        return "yes" if value else "NO"
    if isinstance(value, float):
        if value == 0:
            return "0"
        if abs(value) >= 1e5 or abs(value) < 1e-3:
            return f"{value:.{digits - 1}e}"
        return f"{value:.{digits}g}"
    return str(value)


def table(header: list[str], rows: list[list[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(fmt(c).replace("|", "\\|") for c in row) + " |" for row in rows]
    return lines + [""]


def _items(report: dict[str, Any], name: str) -> list[dict[str, Any]]:
    return report["sections"].get(name, {}).get("items", [])


def _status(item: dict[str, Any]) -> str:
    return item.get("status", "?")


def render(report: dict[str, Any]) -> str:
    opts = report["options"]
    memo = "torch.cuda.max_memory_allocated" if opts["device"].startswith("cuda") else \
        "n/a on the CPU"
    lines = [f"# zgbench gpu-check: device {opts['device']}{' (--small)' if opts['small'] else ''}",
             "", f"Started {report['started']}, {report['seconds']:.0f} s in all. Command: "
             f"`{report['command']}`. Peak memory: {memo}.", ""]
    lines += _summary(report)
    for part in (_env, _quick, _paper, _optimizers, _cross, _steps, _failures):
        lines += part(report)
    return "\n".join(lines) + "\n"


def _summary(report: dict[str, Any]) -> list[str]:
    rows = []
    for name, section in report["sections"].items():
        items = section.get("items", [])
        ok = sum(1 for i in items if _status(i) == "ok")
        rows.append([name, section.get("status"), f"{ok}/{len(items)}", section.get("seconds"),
                     section.get("limit_s")])
    return ["## Sections", ""] + table(["section", "status", "items ok", "seconds", "limit s"],
                                       rows)


def _env(report: dict[str, Any]) -> list[str]:
    items = {i["item"]: i for i in _items(report, "env")}
    if not items:
        return []
    lines = ["## Machine and packages", ""]
    machine = items.get("machine", {}).get("data", {}).get("machine")
    if machine:
        lines += table(["key", "value"], [[k, v] for k, v in machine.items()])
    versions = items.get("packages", {}).get("data", {}).get("versions")
    if versions:
        lines += table(["package", "version"], [[k, v or "missing"] for k, v in versions.items()])
    mitsuba = items.get("mitsuba", {}).get("data")
    if mitsuba:
        lines += table(["Mitsuba", "state"], [[k, v] for k, v in mitsuba.items()])
    return lines


def _quick(report: dict[str, Any]) -> list[str]:
    items = _items(report, "tasks-quick")
    if not items:
        return []
    device = report["options"]["device"]
    rows = []
    for i in items:
        d = i.get("data") or {}
        rows.append([i["item"], d.get("dim"), _status(i), d.get("rel_diff"), d.get("tolerance"),
                     d.get("agree"), d.get("batch"), d.get("evals_per_s"), d.get("peak_mib")])
    lines = ["## Tasks at the quick sizes: loss on the device against the CPU, speed", "",
             f"Same batch of 4 θ (θ₀ + 0.3 x scale x N(0, 1), seed 0), same key, on the CPU "
             f"and on `{device}`; rel. diff = max |Δloss| / max |loss_cpu|. Speed: loss "
             "evaluations per second on the device, at the batch shown (sized to about "
             "0.25 s a call, at most 64)."
             + (" On the CPU this compares two independently built CPU instances: a "
                "determinism check, not a device check." if device == "cpu" else ""), ""]
    agree = [(i.get("data") or {}).get("agree") for i in items]
    lines += [f"Within tolerance: {agree.count(True)} of {len(items)} tasks; outside: "
              f"{agree.count(False)}; n/a (no CPU instance, or the item failed): "
              f"{len(items) - agree.count(True) - agree.count(False)}.", ""]
    lines += table(["task", "d", "status", "rel. diff", "tolerance", "agree", "batch",
                    "evals/s", "peak MiB"], rows)
    whys = {}
    for i in items:
        d = i.get("data") or {}
        if d.get("why"):
            whys[i["item"].split("[")[0]] = (d["tolerance"], d["why"])
    for i in items:
        if (i.get("data") or {}).get("cpu_error"):
            lines += [f"- `{i['item']}`: no CPU instance, agreement n/a: "
                      f"{i['data']['cpu_error']}"]
    lines += ["", "Why each tolerance:", ""]
    lines += [f"- `{name}` ({fmt(tol)}): {why}" for name, (tol, why) in sorted(whys.items())]
    return lines + [""]


def _paper(report: dict[str, Any]) -> list[str]:
    section = report["sections"].get("tasks-paper")
    if not section:
        return []
    rows = []
    for i in section.get("items", []):
        d = i.get("data") or {}
        rows.append([i["item"], d.get("dim"), _status(i), d.get("setup_s"), d.get("batch"),
                     d.get("seconds_per_call"), d.get("evals_per_s"), d.get("peak_mib")])
    notes = " ".join(section.get("notes", []))
    return ["## Tasks at the paper sizes: speed", "",
            "Each instance of `tasks/paper.toml` (radiosity's reference image at 64 spp "
            "instead of 8192: it sets only what `evaluate` compares with). " + notes, ""] + \
        table(["task", "d", "status", "setup s", "batch", "s/call", "evals/s", "peak MiB"], rows)


def _optimizers(report: dict[str, Any]) -> list[str]:
    items = _items(report, "optimizers")
    if not items:
        return []
    rows = []
    for i in items:
        d = i.get("data") or {}
        metrics = d.get("metrics") or {}
        first = next(iter(metrics.items()), (None, None))
        rows.append([i["item"], d.get("task"), _status(i), d.get("evals"), d.get("grads"),
                     d.get("steps"), d.get("seconds"),
                     f"{first[0]} {fmt(first[1])}" if first[0] else None, d.get("peak_mib")])
    return ["## Every optimizer: one short run on the device", ""] + table(
        ["optimizer", "task", "status", "evals", "grads", "steps", "seconds", "final metric",
         "peak MiB"], rows)


def _cross(report: dict[str, Any]) -> list[str]:
    items = _items(report, "cross-product")
    if not items:
        return []
    d = items[0].get("data") or {}
    lines = ["## Cross product: `zgbench run`", "", f"`{d.get('command', '')}`: "
             f"status {_status(items[0])}, exit {d.get('exit')}, board written "
             f"{fmt(d.get('board_written'))}, {fmt(d.get('seconds'))} s.", ""]
    rows = [[r["task"], r["optimizer"], r["status"], r.get("device"), r.get("device_name"),
             r.get("seconds")] for r in d.get("runs", [])]
    return lines + table(["task", "optimizer", "status", "device", "device name", "seconds"],
                         rows)


def _steps(report: dict[str, Any]) -> list[str]:
    if not any(_items(report, n) for n in ("mesh-fit-step", "radiosity-step", "cge-step")):
        return []
    lines = ["## Paper-size instances: time per step", ""]
    for name in ("mesh-fit-step", "radiosity-step"):
        items = _items(report, name)
        if not items:
            continue
        rows = []
        for i in items:
            d = i.get("data") or {}
            rows.append([d.get("spec", i["item"]), d.get("optimizer", i["item"]), d.get("dim"),
                         _status(i),
                         d.get("setup_s"), d.get("first_step_s"), d.get("seconds_per_step"),
                         d.get("evals_per_step"), d.get("semi_saves"), d.get("peak_mib")])
        lines += [f"### {name}", "", f"Paper: {PAPERS[name]}.", ""]
        lines += table(["instance", "optimizer", "d", "status", "setup s", "first step s",
                        "s/step (median)", "evals/step", "semi saves", "peak MiB"], rows)
    items = _items(report, "cge-step")
    if items:
        rows = []
        for i in items:
            d = i.get("data") or {}
            rows.append([i["item"], d.get("spec"), d.get("dim"), _status(i), d.get("coordinates"),
                         d.get("seconds"), d.get("sparse_step_s"), d.get("dense_step_s"),
                         d.get("deepzero_epoch_s"),
                         d.get("speedup_vs_plain"), d.get("rel_diff_to_plain"), d.get("peak_mib")])
        notes = " ".join(report["sections"]["cge-step"].get("notes", []))
        lines += ["### cge-step", "", f"Paper: {PAPERS['cge-step']}. One estimate over a "
                  "layer-stratified random share of the coordinates (3% on a device), timed after "
                  "a warm-up; sparse step (10% of the coordinates: DeepZero's 90% sparsity) and "
                  "dense step extrapolated linearly in the coordinates; epoch = 196 sparse steps "
                  "(50k images / 256; batch 256 only). " + notes, ""]
        lines += table(["mode", "instance", "d", "status", "coordinates", "seconds",
                        "sparse step s", "dense step s", "epoch s (sparse)", "speed-up", "rel. diff to plain",
                        "peak MiB"], rows)
    return lines


def _failures(report: dict[str, Any]) -> list[str]:
    lines = []
    for name, section in report["sections"].items():
        if section.get("error") and not section.get("items"):
            lines += [f"### {name}: {section['status']}", "", "```",
                      str(section.get("error")), str(section.get("log_tail") or ""), "```", ""]
        for i in section.get("items", []):
            if _status(i) != "ok":
                lines += [f"### {name} / {i['item']}: {_status(i)}", "", "```",
                          str(i.get("error", "")).strip()[-3000:], "```", ""]
    return (["## Failures", ""] + lines) if lines else ["## Failures", "", "None.", ""]
