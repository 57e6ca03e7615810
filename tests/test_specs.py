"""Spec strings, parameter coercion and every bad-input path (exit-2 errors)."""

import pytest

from zgbench import Step
from zgbench import specs
from zgbench.errors import UsageError


def test_parse_and_split():
    assert specs.parse("sphere") == ("sphere", {})
    assert specs.parse("sphere[dim=8]") == ("sphere", {"dim": "8"})
    assert specs.parse(" rge[ q = 20 , mu=1e-3 ] ") == ("rge", {"q": "20", "mu": "1e-3"})
    assert specs.split_list('sphere[dim=8,x=1],step, rge') == ["sphere[dim=8,x=1]", "step", "rge"]


@pytest.mark.parametrize("text, message", [
    ("sphere[dim=8", "unbalanced"),
    ("sphere[dim]", "key=value"),
    ("sphere[dim=1,dim=2]", "given twice"),
    ("[dim=1]", "cannot read spec"),
    ("a,,b", "empty entry"),
])
def test_parse_errors(text, message):
    with pytest.raises(UsageError, match=message):
        specs.split_list(text) if "," in text and "[" not in text else specs.parse(text)


def test_resolve_coerces_and_canonicalises(registry):
    spec = specs.resolve_task(registry, "sphere[dim=16]")
    assert spec.kwargs == {"dim": 16}
    assert spec.label == "sphere[dim=16]"
    assert specs.resolve_task(registry, "sphere").canonical == specs.resolve_task(
        registry, "sphere[dim=8]").canonical
    assert specs.resolve_task(registry, "sphere[dim=8]").label == "sphere"
    opt = specs.resolve_optimizer(registry, "rge[q=20,mu=1e-3,directions=gaussian]")
    assert opt.kwargs["q"] == 20 and opt.kwargs["mu"] == Step(1e-3)
    assert opt.kwargs["directions"] == "gaussian"
    assert specs.resolve_optimizer(registry, "cge[batch=1e3]").kwargs["batch"] == 1000


def test_bool_coercion():
    from zgbench.params import Param

    p = Param(False, "flag")
    p.name = "flag"
    assert p.coerce("true", "x") is True and p.coerce("0", "x") is False
    with pytest.raises(UsageError, match="use true or false"):
        p.coerce("maybe", "x")


@pytest.mark.parametrize("text, fragments", [
    ("sphre", ["unknown task 'sphre'", "Did you mean 'sphere'", "Known:", "rosenbrock"]),
    ("sphere[dimm=3]", ["unknown parameter 'dimm' of task 'sphere'", "Did you mean 'dim'"]),
    ("sphere[dim=abc]", ["bad value 'abc'", "'dim'", "expected an integer, got 'abc'."]),  # 26.5
    ("sphere[dim=2.5]", ["not a whole number"]),
    ("rosenbrock[dim=1]", ["rosenbrock needs dim >= 2"]),
])
def test_bad_task_specs(registry, text, fragments):
    with pytest.raises(UsageError) as info:
        specs.resolve_task(registry, text)
    for fragment in fragments:
        assert fragment in str(info.value)


def test_bad_optimizer_specs(registry):
    with pytest.raises(UsageError, match="Did you mean 'random-search'"):
        specs.resolve_optimizer(registry, "random-serch")
    with pytest.raises(UsageError, match="choose one of sphere, gaussian"):
        specs.resolve_optimizer(registry, "rge[directions=cube]")
