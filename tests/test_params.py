import re

import pytest

from attribench_core.errors import ParameterError
from attribench_core.params import Param, parse_assignments, resolve_params

DECLARED = (
    Param("steps", 64, type=int),
    Param("sigma", 0.15, type=float),
    Param("mode", "range", choices=("range", "absolute")),
    Param("abs", False, type=bool),
)


def test_defaults_and_parsed_values():
    values = resolve_params(DECLARED, parse_assignments("steps=32, sigma=0.1,abs=yes", owner="x"), owner="x")
    assert values == {"steps": 32, "sigma": 0.1, "mode": "range", "abs": True}


def test_python_values_are_checked():
    assert resolve_params(DECLARED, {"sigma": 1}, owner="x")["sigma"] == 1.0
    with pytest.raises(ParameterError, match="'steps' expects int"):
        resolve_params(DECLARED, {"steps": 1.5}, owner="x")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("steps", "Malformed parameter 'steps' for ig: write name=value"),
        ("steps=", "Malformed parameter"),
        ("=3", "Malformed parameter"),
        ("steps=4,steps=8", "Parameter 'steps' given twice for ig \\(4 and 8\\): give it once"),
    ],
)
def test_malformed_assignments(text, message):
    with pytest.raises(ParameterError, match=message):
        parse_assignments(text, owner="ig")


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ({"steps": "many"}, "Parameter 'steps' expects int, got 'many'"),
        ({"mode": "relative"}, "Parameter 'mode' must be one of range, absolute; got 'relative'"),
        ({"abs": "maybe"}, "Parameter 'abs' expects bool"),
        (
            {"step": "3"},
            "Unknown parameter 'step' for ig. Did you mean steps? Known parameters: steps, sigma, mode, abs.",
        ),
    ],
)
def test_bad_values_name_the_problem(given, message):
    with pytest.raises(ParameterError, match=re.escape(message)):
        resolve_params(DECLARED, given, owner="ig")


def test_declarations_are_checked_and_bools_are_not_ints():
    with pytest.raises(ParameterError, match="'steps' expects int, got True"):
        resolve_params(DECLARED, {"steps": True}, owner="x")
    with pytest.raises(ParameterError, match="'mode' must be one of"):
        Param("mode", "other", choices=("range",))


def test_numbers_out_of_their_declared_range_are_refused():
    steps = Param("steps", 64, type=int, minimum=1)
    sigma = Param("sigma", 0.5, type=float, minimum=0, maximum=1)
    assert steps.parse("1") == 1 and sigma.parse("1") == 1.0
    with pytest.raises(ParameterError, match="'steps' must be at least 1; got 0"):
        steps.parse("0")
    with pytest.raises(ParameterError, match=re.escape("'sigma' must be at least 0 and at most 1; got 1.5")):
        sigma.check(1.5)
    with pytest.raises(ParameterError, match="'sigma' must be at least 0"):
        Param("sigma", -0.1, type=float, minimum=0)  # a default out of range is a plugin bug


@pytest.mark.parametrize("text", ["0", "-0.5", "1", "nan"])
def test_exclusive_bounds_refuse_their_limits_and_nan(text):
    area = Param("area", 0.3, type=float, greater_than=0, less_than=1)
    with pytest.raises(ParameterError, match=re.escape("'area' must be greater than 0 and less than 1; got")):
        area.parse(text)


def test_exclusive_bounds_accept_what_lies_inside():
    rate = Param("learning_rate", 0.01, type=float, greater_than=0)
    assert rate.parse("1e-9") == 1e-9 and rate.parse("inf") == float("inf")
    assert rate.range_text() == "greater than 0" and Param("mode", "a").range_text() == ""
