"""Start-up: commands import only what they need, and ``zgbench list`` reads the registry
metadata cache (``zgbench/registry_cache.py``) with the same output as the plugins give.

The subprocess tests look at ``sys.modules`` after a command: whether torch was imported is
the point of the feature (its import takes seconds; the cache's takes none).
"""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from rich.console import Console

import zgbench
from zgbench import plugins, registry_cache
from zgbench.commands import list as list_command

ROOT = Path(zgbench.__file__).parent.parent

#: Runs a zgbench command and prints, on stderr's last line, which heavy modules it imported.
_PROBE = textwrap.dedent("""\
    import sys
    from zgbench.cli import main
    try:
        code = main(sys.argv[1:])
    except SystemExit as exc:
        code = exc.code
    heavy = [m for m in ("torch", "numpy", "pandas", "matplotlib") if m in sys.modules]
    print("imported:" + ",".join(heavy), file=sys.stderr)
    sys.exit(code)
""")


def _zgbench(args: list[str], cache: Path, path: list[Path] = ()) -> tuple[int, str, str, list[str]]:
    """``zgbench ARGS`` in a fresh process with its own cache folder: exit status, stdout,
    stderr less the probe's line, and the heavy modules it imported."""
    env = {**os.environ, "ZGBENCH_CACHE": str(cache),
           "PYTHONPATH": os.pathsep.join(map(str, [*path, ROOT, os.environ.get("PYTHONPATH", "")]))}
    done = subprocess.run([sys.executable, "-c", _PROBE, *args], capture_output=True,
                          text=True, env=env, timeout=300)
    *err, probe = done.stderr.rstrip("\n").split("\n")
    assert probe.startswith("imported:"), done.stderr
    return done.returncode, done.stdout, "\n".join(err), [m for m in probe[9:].split(",") if m]


@pytest.mark.parametrize("args", [["--help"], ["run", "--help"], ["run", "--workers"],
                                  ["leaderboard", "--nonsense"], ["show", "--help"]])
def test_help_and_usage_errors_import_no_torch(tmp_path, args):
    code, out, err, heavy = _zgbench(args, tmp_path)
    assert code == (0 if "--help" in args else 2), err
    assert (out if code == 0 else err).strip()
    assert heavy == []


def test_the_public_names_are_still_exported():
    names = set(zgbench.__all__) - {"__version__"}
    assert names <= set(dir(zgbench))
    assert all(getattr(zgbench, name) is not None for name in names)
    assert zgbench.cache_key is registry_cache.cache.key
    with pytest.raises(AttributeError, match="no_such_name"):
        zgbench.no_such_name  # noqa: B018


def _render(registry) -> dict[str, str]:
    """Everything ``zgbench list`` prints from a registry: both tables and each component's
    details, as text."""
    pages = {"tasks": list_command._table("Tasks", registry.tasks, "provides"),
             "optimizers": list_command._table("Optimizers", registry.optimizers, "requires")}
    for name in [*registry.tasks, *registry.optimizers]:
        pages[name] = list_command._details(registry, name)
    out = {}
    for name, table in pages.items():
        console = Console(record=True, width=140, file=open(os.devnull, "w"))
        console.print(table)
        out[name] = console.export_text()
    return out


def test_described_registry_lists_exactly_as_the_plugins(registry, tmp_path):
    """Every table and every component's details, from the stand-ins the cache rebuilds,
    equal those of the real classes."""
    stored = pickle.loads(pickle.dumps(registry_cache._describe(registry)))
    described = registry_cache._described_registry(stored, ())
    assert all(getattr(e.cls, "_real", None) for e in described.tasks.values())
    assert _render(described) == _render(registry)


def test_stand_ins_take_what_is_not_kept_from_the_real_class(registry):
    stored = registry_cache._describe(registry)
    entry = stored["tasks"]["sphere"]
    del entry["data"]["metrics"]  # as if it could not be kept
    entry["deferred"].append("metrics")
    sphere = registry_cache._described_registry(stored, ())
    assert sphere.tasks["sphere"].cls.metrics == registry.tasks["sphere"].cls.metrics
    # a contract method the stand-in's base lacks comes from the real class too
    assert sphere.tasks["sphere"].cls.initial is registry.tasks["sphere"].cls.initial


def test_a_registry_with_errors_is_not_cached(registry):
    broken = plugins.Registry(manager=registry.manager, tasks=registry.tasks,
                              errors=[plugins.PluginError("x", "failed to load")])
    assert registry_cache._describe(broken) is None


def test_a_cache_file_cannot_run_code(tmp_path):
    path = tmp_path / "evil.pickle"
    path.write_bytes(pickle.dumps({"key": os.system}))  # names a global outside the allow-list
    assert registry_cache._read(path) is None
    path.write_bytes(b"not a pickle")
    assert registry_cache._read(path) is None


_PLUGIN = '''\
"""A plugin written for this test."""
import zgbench
from zgbench import Param, hookimpl


class Probe(zgbench.Optimizer):
    """A probe optimizer."""

    name = "startup-probe"
    width = Param(3, "how wide")
{extra}
    def run(self, problem):
        pass


@hookimpl
def zgbench_optimizers():
    return [Probe]
'''


def _install_plugin(site: Path, extra: str = "") -> None:
    """A distribution with a ``zgbench`` entry point, as an editable install leaves it: the
    metadata in a dist-info folder, the module as a source file."""
    dist = site / "startup_probe-0.1.dist-info"
    dist.mkdir(parents=True, exist_ok=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: startup-probe\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[zgbench]\nstartup-probe = startup_probe\n")
    (site / "startup_probe.py").write_text(_PLUGIN.format(extra=extra))


@pytest.mark.slow
def test_list_from_the_cache_is_the_same_and_sees_a_changed_or_blocked_plugin(tmp_path):
    cache, site = tmp_path / "cache", tmp_path / "site"
    _install_plugin(site)
    code, cold, err, heavy = _zgbench(["list"], cache, [site])
    assert code == 0 and "torch" in heavy, err  # no cache yet: the plugins are loaded
    assert "startup-probe" in cold and "width=3" in cold and "warning" not in err
    assert list((cache / "registry").glob("*.pickle"))
    code, warm, err, heavy = _zgbench(["list"], cache, [site])
    assert (code, warm, heavy) == (0, cold, [])  # from the cache: same output, no torch
    code, blocked, err, heavy = _zgbench(["-p", "no:startup-probe", "list"], cache, [site])
    assert code == 0 and "torch" in heavy and "startup-probe" not in blocked  # cached apart

    _install_plugin(site, extra='    depth = Param(5, "how deep")\n')  # the plugin is edited
    code, changed, err, heavy = _zgbench(["list"], cache, [site])
    assert code == 0 and "torch" in heavy and "depth=5" in changed, err
    code, warm, err, heavy = _zgbench(["list", "startup-probe"], cache, [site])
    assert code == 0 and heavy == [] and "depth" in warm and "how deep" in warm, err


@pytest.mark.parametrize("args,says", [
    (["run", "--tasks", "nosuch", "--optimizers", "cma-es"], "nosuch"),
    (["run", "--tasks", "sphere[dim=abc]", "--optimizers", "cma-es"],
     "expected an integer, got 'abc'"),
    (["run", "--tasks", "sphere", "--optimizers", "no-such-optimizer"], "no-such-optimizer"),
])
def test_run_says_a_bad_name_or_parameter_before_importing_torch(tmp_path, args, says):
    """With the registry's description cached (any earlier command), ``run`` checks names and
    declared parameters against it before importing a plugin."""
    code, _, err, heavy = _zgbench(["list"], tmp_path)  # fills the cache
    assert code == 0, err
    code, _, err, heavy = _zgbench([*args, "--out", str(tmp_path / "out")], tmp_path)
    assert code == 2 and says in " ".join(err.split()), err
    assert heavy == []
