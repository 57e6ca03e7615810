"""The HTML report, rendered in a real headless Chromium (Debian's): it loads without errors
from disk (its scripts beside it, nothing fetched), shows the tables, the interactive plots
and every image, including the pictures a task saved; its tables sort and filter, its
convergence plots switch between evaluations and seconds, and it fits 1,400 px."""

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
         "--hide-scrollbars", "--window-size=1400,900"]


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
    optimizers = [specs.resolve_optimizer(registry, o) for o in ("random-search", "rge", "fd")]
    entries = [(specs.resolve_task(registry, t), Budget(evals=200), optimizers)
               for t in ("picture-sphere[dim=3]", "step[dim=3]")]
    folder = tmp_path_factory.mktemp("results")
    summary = run_all(plan(entries, 2), registry, folder, InProcessExecutor())
    assert summary.done == 12
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
  tables: document.querySelectorAll('section:not(.extra-section) table.data').length,
  sections: Array.from(document.querySelectorAll('section.extra-section h2')).map(
    h => h.textContent),
  taskFigures: Array.from(document.querySelectorAll('section.task details.task-figure img')).map(
    i => i.getAttribute('src')),
  overallRows: document.querySelectorAll('#overall table tbody tr').length,
  taskSections: Array.from(document.querySelectorAll('section.task h2')).map(h => h.textContent),
  images: Array.from(document.images).map(i => ({src: i.getAttribute('src'),
                                                 ok: i.complete && i.naturalWidth > 0})),
  links: Array.from(document.querySelectorAll('a[href]')).map(a => a.getAttribute('href')),
  sources: Array.from(document.querySelectorAll('script[src], link[href]')).map(
    e => e.getAttribute('src') || e.getAttribute('href')),
  grid: Array.from(document.querySelectorAll('table.pictures tbody tr')).map(
    tr => [tr.querySelector('th').textContent, tr.querySelectorAll('td img').length]),
  gridSeeds: document.querySelectorAll('table.pictures thead th').length - 1,
  shownTasks: Array.from(document.querySelectorAll('section.task')).filter(
    s => s.offsetParent !== null).map(s => s.id),
  plotly: typeof Plotly,
  width: document.documentElement.scrollWidth,
})"""


def _wait_for(browser, expression, timeout=20):
    """Poll a page expression until it is true (plots draw after the load event)."""
    deadline = time.monotonic() + timeout
    while not browser.evaluate(expression):
        if time.monotonic() > deadline:
            raise TimeoutError(expression)
        time.sleep(0.1)


@pytest.fixture(scope="module")
def page(results, tmp_path_factory):
    out = tmp_path_factory.mktemp("page") / "report"
    return report.build(results, out)


@pytest.fixture
def browser(tmp_path):
    if CHROMIUM is None:
        pytest.skip("chromium is not installed (apt-get install -y chromium; scripts/setup.sh "
                    "installs it)")
    b = Browser(tmp_path / "profile")
    yield b
    b.close()


def test_report_renders_in_chromium(results, page, browser, tmp_path):
    out = page.parent
    stored = [a for r in ResultStore(results) for a in r["artifacts"]]
    artifacts = [a for a in stored if a.endswith(".png")]
    assert len(artifacts) == 6  # picture-sphere x 3 optimizers x 2 seeds
    assert len(stored) == 12  # and beside each picture the θ the harness stores
    browser.open(page.resolve().as_uri())
    browser.evaluate("document.getElementById('profiles').scrollIntoView(); 1")
    _wait_for(browser, "document.querySelector('#profiles .plot .main-svg') !== null")
    state = json.loads(browser.evaluate(PAGE_STATE))
    browser.screenshot(tmp_path / "report.png")
    assert browser.errors() == []
    assert state["title"] == "zgbench report" and state["plotly"] == "object"
    # overall, one family board, win rate, two task tables, machine, plugins
    assert state["tables"] == 7 and state["overallRows"] == 3
    assert state["width"] <= 1400  # nothing scrolls sideways at 1,400 px
    assert state["taskSections"] == ["picture-sphere[dim=3]", "step[dim=3]"]
    # the fixed-target analysis the leaderboard wrote, as a section, each task's figure in
    # its own view
    assert "Fixed-target runtimes" in state["sections"]
    assert {"targets/step_dim=3.png", "targets/picture-sphere_dim=3.png"} <= set(
        state["taskFigures"])
    assert state["shownTasks"] == ["task-picture-sphere_dim=3"]  # one task at a time
    # one self-contained folder: every script and style sheet is a file beside the page
    assert sorted(state["sources"]) == ["plotly.min.js", "report.css", "report.js",
                                        "tablesort.min.js"]
    assert all((out / s).is_file() for s in state["sources"])
    # the static PNGs stay (for papers), linked, and are there
    assert {"win_rate.png", "profiles.png", "step_dim=3.png", "picture-sphere_dim=3.png",
            "step_dim=3.profile.png"} <= set(state["links"])
    assert all((out / link).is_file() for link in state["links"] if link.endswith(".png"))
    assert all(i["ok"] for i in state["images"]), state["images"]
    assert set(artifacts) <= {i["src"] for i in state["images"]}  # copied next to the page
    # a grid: one row per optimizer, one column per seed (no reference: this task has none)
    assert state["gridSeeds"] == 2
    assert sorted(state["grid"]) == [["fd", 2], ["random-search", 2], ["rge", 2]]
    assert (tmp_path / "report.png").stat().st_size > 20_000

    # the check can fail: a picture gone missing is caught
    picture = (out / artifacts[0]).read_bytes()
    (out / artifacts[0]).unlink()
    try:
        browser.open(page.resolve().as_uri())
        state = json.loads(browser.evaluate(PAGE_STATE))
        broken = [i["src"] for i in state["images"] if not i["ok"]]
        assert broken == [artifacts[0]]
        assert any("ERR_FILE_NOT_FOUND" in e for e in browser.errors())
    finally:
        (out / artifacts[0]).write_bytes(picture)  # the page is shared with the tests below


COLUMN = """(function (section, name) {
  const table = document.getElementById(section).querySelector('table.data');
  const i = Array.from(table.tHead.rows[0].cells).findIndex(th => th.title === name);
  return Array.from(table.tBodies[0].rows).filter(tr => !tr.classList.contains('filtered'))
    .map(tr => tr.cells[i].getAttribute('data-sort') ?? tr.cells[i].textContent);
})"""


def _column(browser, section, name):
    """The shown cells of a column (its sort value where numeric) of the first table of a
    section, top to bottom."""
    return browser.evaluate(f"{COLUMN}({json.dumps(section)}, {json.dumps(name)})")


def _in(section, tail):
    """A page expression on an element of a section (ids such as task-x_dim=3 need no
    CSS escaping this way)."""
    return f"document.getElementById({json.dumps(section)}).querySelector({json.dumps(tail)})"


def _click_header(browser, section, name):
    browser.evaluate(f"Array.from({_in(section, 'table.data')}.tHead.rows[0].cells)"
                     f".find(th => th.title === {json.dumps(name)}).click(); 1")


def _filter(browser, section, text):
    browser.evaluate(f"(() => {{ const f = {_in(section, 'input.filter')}; "
                     f"f.value = {json.dumps(text)}; f.dispatchEvent(new Event('input')); }})(); 1")


def test_tables_sort_and_filter(page, browser):
    browser.open(page.resolve().as_uri())
    task = "task-picture-sphere_dim=3"
    numbers = [float(v) for v in _column(browser, task, "median")]
    assert len(numbers) == 3 and numbers == sorted(numbers)  # ranked: best median first
    _click_header(browser, task, "median")  # first click: ascending
    assert [float(v) for v in _column(browser, task, "median")] == sorted(numbers)
    _click_header(browser, task, "median")  # again: descending, the row order changes
    assert [float(v) for v in _column(browser, task, "median")] == sorted(numbers)[::-1]
    _click_header(browser, task, "optimizer")  # text columns sort as text
    assert _column(browser, task, "optimizer") == ["fd", "random-search", "rge"]
    # numbers sort by value, not as text ("1e-05" < "0.5" as text, not as numbers)
    _click_header(browser, task, "median")
    assert [float(v) for v in _column(browser, task, "median")] == sorted(numbers)

    # the filter keeps the rows holding every word typed
    _filter(browser, "overall", "rge")
    assert _column(browser, "overall", "optimizer") == ["rge"]
    assert browser.evaluate(f"{_in('overall', '.count')}.textContent") == "1 of 3 rows"
    _filter(browser, "overall", "")
    assert len(_column(browser, "overall", "optimizer")) == 3

    # the hidden columns of a wide table show when asked
    visible = (f"Array.from({_in(task, 'table.data')}.tHead.rows[0].cells)"
               ".filter(th => th.offsetParent !== null).length")
    few = browser.evaluate(visible)
    browser.evaluate(f"{_in(task, 'input.allcols')}.click(); 1")
    assert browser.evaluate(visible) > few
    assert browser.errors() == []


TRACES = """(function (id) {
  const div = document.querySelector(`div.plot[data-plot="${id}"]`);
  return JSON.stringify({title: div.layout.xaxis.title.text,
    traces: div.data.filter(t => t.showlegend !== false).map(t => ({name: t.name, x: t.x}))});
})"""


def test_convergence_plot_switches_to_seconds(page, browser):
    browser.open(page.resolve().as_uri())
    browser.evaluate("location.hash = '#task-step_dim=3'; 1")  # the picker shows that task
    plot = "task-step_dim=3-convergence"
    _wait_for(browser, f"document.querySelector('div.plot[data-plot=\"{plot}\"]')"
                       ".dataset.drawn === '1'")
    assert browser.evaluate("Array.from(document.querySelectorAll('section.task'))"
                            ".filter(s => s.offsetParent !== null).map(s => s.id)") == \
        ["task-step_dim=3"]
    before = json.loads(browser.evaluate(f"{TRACES}({json.dumps(plot)})"))
    assert before["title"] == "loss evaluations"
    curves = {t["name"]: t["x"] for t in before["traces"] if not t["name"].startswith(
        ("start", "reference"))}
    assert sorted(curves) == ["fd", "random-search", "rge"]
    assert max(curves["rge"]) == 200  # the budget, in evaluations
    buttons = browser.evaluate(f"Array.from(document.querySelectorAll("
                               f"'div.modes[data-for=\"{plot}\"] button')).map(b => b.textContent)")
    assert buttons[0] == "evaluations" and "seconds" in buttons
    assert "gradients" not in buttons  # no gradients on step: no such button
    browser.evaluate(f"Array.from(document.querySelectorAll('div.modes[data-for=\"{plot}\"] "
                     f"button')).find(b => b.textContent === 'seconds').click(); 1")
    after = json.loads(browser.evaluate(f"{TRACES}({json.dumps(plot)})"))
    assert after["title"].startswith("seconds")
    seconds = {t["name"]: t["x"] for t in after["traces"] if t["name"] in curves}
    assert sorted(seconds) == ["fd", "random-search", "rge"]
    assert max(seconds["rge"]) < 60 and seconds["rge"] != curves["rge"]  # a run takes < 1 min
    assert browser.errors() == []


def test_extra_sections_show_other_analyses(results, tmp_path):
    """The place other analyses' files join the page: a section of their CSVs as tables and
    their PNGs as linked figures; nothing written, no section."""
    out = tmp_path / "report"
    assert report.files_section(out, "Fixed-target", "targets", csvs=["targets*.csv"]) is None
    out.mkdir()
    (out / "targets_x.csv").write_text("optimizer,aRT\nrge,12.5\nfd,3.25\n")
    picture = next(p for p in (results / "artifacts").rglob("*.png"))
    (out / "ecdf_x.png").write_bytes(picture.read_bytes())
    section = report.files_section(out, "Fixed-target", "targets", "aRT per target",
                                   csvs=["targets*.csv"], pngs=["ecdf*.png"])
    page = report.build(results, out, sections=[section]).read_text()
    assert '<section id="targets" class="extra-section"><h2>Fixed-target</h2>' in page
    assert 'href="#targets"' in page and 'data-sort="12.5"' in page
    assert 'src="ecdf_x.png"' in page and "aRT per target" in page


def test_report_command(results, tmp_path, capsys):
    assert cli.main(["report", str(results), "-o", str(tmp_path / "r"), "--title", "Quick"]) == 0
    html = (tmp_path / "r" / "index.html").read_text()
    assert "<title>Quick</title>" in html and '<table class="data">' in html
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
    assert set(tracks.index) == {"random-search", "rge", "fd"}
    tuned_table = pd.read_csv(out / "tuned" / "step_dim=3.csv").set_index("optimizer")
    assert tuned_table.loc["rge", "spec"] == "rge[lr=0.01]"


def test_report_starts_from_the_leaderboard_run_drew(tmp_path):
    """run writes RESULTS/leaderboard; the report copies its PNGs into its own folder first
    (where it has none), so the leaderboard's key check skips the figures already drawn."""
    board, out = tmp_path / "results" / "leaderboard", tmp_path / "report"
    board.mkdir(parents=True)
    (board / "a.png").write_bytes(b"drawn by run")
    (board / "b.png").write_bytes(b"drawn by run")
    (board / "link.png").symlink_to(board / "a.png")
    out.mkdir()
    (out / "b.png").write_bytes(b"the report's own")
    assert report.seed_figures(board, out) == 1
    assert (out / "a.png").read_bytes() == b"drawn by run"
    assert (out / "b.png").read_bytes() == b"the report's own"  # never overwritten
    assert not (out / "link.png").exists()  # links are not followed
    assert report.seed_figures(tmp_path / "nowhere", out) == 0
