"""The HTML report, rendered in a real headless Chromium (Debian's): it loads without errors
and shows the tables and every image, including the pictures a task saved."""

import base64
import fcntl
import json
import os
import select
import shutil
import subprocess
import time
import types

import pytest

from zgbench import cli, hookimpl, plugins, report, specs
from zgbench.budget import Budget
from zgbench.executors import InProcessExecutor
from zgbench.harness import plan, run_all
from zgbench.store import ResultStore
from zgbench.tasks.synthetic import Sphere

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--hide-scrollbars", "--window-size=1280,900"]


class PictureSphere(Sphere):
    """Sphere that saves a bar chart of its result: a task with pictures."""

    name = "picture-sphere"

    def artifacts(self, theta, directory):
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        os.makedirs(directory, exist_ok=True)
        fig, ax = plt.subplots(figsize=(2, 1.5), dpi=60)
        ax.bar(range(self.dim), theta.cpu().numpy())
        path = os.path.join(directory, "theta.png")
        fig.savefig(path)
        plt.close(fig)
        return [path]


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    module = types.ModuleType("pictures")
    module.zgbench_tasks = hookimpl(lambda: [PictureSphere])
    registry = plugins.load(extra_plugins=[module])
    optimizers = [specs.resolve_optimizer(registry, o) for o in ("random-search", "rge")]
    entries = [(specs.resolve_task(registry, t), Budget(evals=200), optimizers)
               for t in ("picture-sphere[dim=3]", "step[dim=3]")]
    folder = tmp_path_factory.mktemp("results")
    summary = run_all(plan(entries, 2), registry, folder, InProcessExecutor())
    assert summary.done == 8
    return folder


class Browser:
    """Headless Chromium driven over the DevTools protocol on a pipe (fds 3 and 4 of the
    browser; messages are JSON separated by NUL), so no websocket client is needed."""

    def __init__(self, profile):
        to_browser, self._out = _pipe_above(10)
        self._in, from_browser = _pipe_above(10)

        def fds():  # runs in the child before exec: the protocol's fixed descriptors
            os.dup2(to_browser, 3)
            os.dup2(from_browser, 4)

        self.proc = subprocess.Popen(
            [CHROMIUM, *FLAGS, f"--user-data-dir={profile}", "--remote-debugging-pipe",
             "about:blank"], pass_fds=(3, 4), preexec_fn=fds,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.close(to_browser)
        os.close(from_browser)
        self._buffer, self._id, self.events = b"", 0, []
        target = next(t for t in self.call("Target.getTargets")["targetInfos"]
                      if t["type"] == "page")
        self.session = self.call("Target.attachToTarget", targetId=target["targetId"],
                                 flatten=True)["sessionId"]
        for domain in ("Page", "Runtime", "Log"):
            self.call(f"{domain}.enable", session=True)

    def call(self, method, session=False, timeout=30, **params):
        self._id += 1
        message = {"id": self._id, "method": method, "params": params}
        if session:
            message["sessionId"] = self.session
        os.write(self._out, json.dumps(message).encode() + b"\0")
        reply = self._wait(lambda m: m.get("id") == self._id, timeout)
        if "error" in reply:
            raise RuntimeError(f"{method}: {reply['error']}")
        return reply["result"]

    def open(self, url, timeout=30):
        self.events.clear()
        self.call("Page.navigate", session=True, url=url)
        self._wait(lambda m: m.get("method") == "Page.loadEventFired", timeout)

    def evaluate(self, expression):
        result = self.call("Runtime.evaluate", session=True, expression=expression,
                           returnByValue=True)
        return result["result"]["value"]

    def errors(self):
        """Uncaught exceptions, console errors and failed loads since the last ``open``."""
        out = []
        for m in self.events:
            p = m.get("params", {})
            if m.get("method") == "Runtime.exceptionThrown":
                out.append(p["exceptionDetails"].get("text", "exception"))
            elif m.get("method") == "Runtime.consoleAPICalled" and p.get("type") == "error":
                out.append(str(p.get("args")))
            elif m.get("method") == "Log.entryAdded" and p["entry"]["level"] == "error":
                out.append(f"{p['entry'].get('text')} {p['entry'].get('url', '')}")
        return out

    def screenshot(self, path):
        data = self.call("Page.captureScreenshot", session=True, format="png",
                         captureBeyondViewport=True)["data"]
        path.write_bytes(base64.b64decode(data))

    def close(self):
        try:
            self.call("Browser.close", timeout=10)
        except Exception:
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        os.close(self._out)
        os.close(self._in)

    def _wait(self, match, timeout):
        deadline = time.monotonic() + timeout
        while True:
            while b"\0" in self._buffer:
                raw, self._buffer = self._buffer.split(b"\0", 1)
                message = json.loads(raw)
                if match(message):
                    return message
                if "method" in message:
                    self.events.append(message)
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._in], [], [], left)[0]:
                raise TimeoutError("no answer from Chromium")
            chunk = os.read(self._in, 1 << 20)
            if not chunk:
                raise RuntimeError("Chromium closed the DevTools pipe")
            self._buffer += chunk


def _pipe_above(low):
    """A pipe whose descriptors are >= ``low`` (so moving them to 3 and 4 clobbers nothing)."""
    r, w = os.pipe()
    hi = (fcntl.fcntl(r, fcntl.F_DUPFD_CLOEXEC, low), fcntl.fcntl(w, fcntl.F_DUPFD_CLOEXEC, low))
    os.close(r)
    os.close(w)
    return hi


PAGE_STATE = """JSON.stringify({
  title: document.title,
  tables: document.querySelectorAll('table.data').length,
  overallRows: document.querySelectorAll('#overall table tbody tr').length,
  taskSections: Array.from(document.querySelectorAll('section.task h2')).map(h => h.textContent),
  images: Array.from(document.images).map(i => ({src: i.getAttribute('src'),
                                                 ok: i.complete && i.naturalWidth > 0})),
  grid: Array.from(document.querySelectorAll('table.pictures tbody tr')).map(
    tr => [tr.querySelector('th').textContent, tr.querySelectorAll('td img').length]),
  gridSeeds: document.querySelectorAll('table.pictures thead th').length - 1,
})"""


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install -y "
                    "chromium; scripts/setup.sh installs it)")
def test_report_renders_in_chromium(results, tmp_path):
    out = tmp_path / "report"
    page = report.build(results, out)
    stored = [a for r in ResultStore(results) for a in r["artifacts"]]
    artifacts = [a for a in stored if a.endswith(".png")]
    assert len(artifacts) == 4  # picture-sphere x 2 optimizers x 2 seeds
    assert len(stored) == 8  # and beside each picture the θ the harness stores
    browser = Browser(tmp_path / "profile")
    try:
        browser.open(page.resolve().as_uri())
        state = json.loads(browser.evaluate(PAGE_STATE))
        browser.screenshot(tmp_path / "report.png")
        assert browser.errors() == []
        assert state["title"] == "zgbench report"
        # overall, one family board, win rate, two task tables, machine, plugins
        assert state["tables"] == 7 and state["overallRows"] == 2
        assert state["taskSections"] == ["picture-sphere[dim=3]", "step[dim=3]"]
        sources = {i["src"] for i in state["images"]}
        assert all(i["ok"] for i in state["images"]), state["images"]
        assert {"win_rate.png", "profiles.png", "step_dim=3.png",
                "picture-sphere_dim=3.png"} <= sources
        assert set(artifacts) <= sources  # the task's pictures, copied next to the page
        # a grid: one row per optimizer, one column per seed (no reference: this task has none)
        assert state["gridSeeds"] == 2 and sorted(state["grid"]) == [["random-search", 2], ["rge", 2]]
        assert (tmp_path / "report.png").stat().st_size > 20_000

        # the check can fail: a picture gone missing is caught
        (out / artifacts[0]).unlink()
        browser.open(page.resolve().as_uri())
        state = json.loads(browser.evaluate(PAGE_STATE))
        broken = [i["src"] for i in state["images"] if not i["ok"]]
        assert broken == [artifacts[0]]
        assert any("ERR_FILE_NOT_FOUND" in e for e in browser.errors())
    finally:
        browser.close()


def test_report_command(results, tmp_path, capsys):
    assert cli.main(["report", str(results), "-o", str(tmp_path / "r"), "--title", "Quick"]) == 0
    html = (tmp_path / "r" / "index.html").read_text()
    assert "<title>Quick</title>" in html and 'class="dataframe data"' in html
    assert "machine and versions" in html.lower() and "torch" in html
    assert cli.main(["report", str(tmp_path / "empty"), "-o", str(tmp_path / "x")]) == 2
    assert "no run records" in " ".join(capsys.readouterr().err.split())


def test_run_writes_the_report_in_one_command(tmp_path):
    """What the published leaderboards need: run, leaderboard and page from one command."""
    code = cli.main(["run", "--tasks", "sphere[dim=2]", "--optimizers", "random-search,rge",
                     "--seeds", "2", "--evals", "100", "--out", str(tmp_path / "results"),
                     "--report", str(tmp_path / "board")])
    assert code == 0
    names = {p.name for p in (tmp_path / "board").iterdir()}
    assert {"index.html", "overall.csv", "stats.csv", "machine.json", "win_rate.png",
            "profiles.png", "sphere_dim=2.csv", "sphere_dim=2.png"} <= names


def test_report_shows_both_tracks(results, tmp_path):
    """Issue 15.3: with the tuned track's results the page shows both tracks, with the
    sentence on how to read them, and each task's tuned table and plot."""
    registry = plugins.load()
    tuned_specs = [specs.resolve_optimizer(registry, o)
                   for o in ("random-search[sigma=0.1]", "rge[lr=0.01]")]
    entries = [(specs.resolve_task(registry, "step[dim=3]"), Budget(evals=200), tuned_specs)]
    tuned = tmp_path / "tuned-results"
    assert run_all(plan(entries, 2), registry, tuned, InProcessExecutor()).done == 4
    out = tmp_path / "report"
    assert cli.main(["report", str(results), "--tuned", str(tuned), "-o", str(out)]) == 0
    html = (out / "index.html").read_text()
    assert "Tracks: default and tuned" in html and "How to read the two tracks" in html
    assert "Overall, tuned track" in html and 'src="tuned/step_dim=3.png"' in html
    assert (out / "tuned" / "step_dim=3.png").exists() and (out / "tracks.csv").exists()
    import pandas as pd

    tracks = pd.read_csv(out / "tracks.csv").set_index("optimizer")
    assert {"default_position", "tuned_position", "moved"} <= set(tracks.columns)
    assert set(tracks.index) == {"random-search", "rge"}
    tuned_table = pd.read_csv(out / "tuned" / "step_dim=3.csv").set_index("optimizer")
    assert tuned_table.loc["rge", "spec"] == "rge[lr=0.01]"
