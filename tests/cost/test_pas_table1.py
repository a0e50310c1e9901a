"""`effvid flops --reduce` reproduces the GFLOPs per view of every PAS step in the PAS paper's Table 1.

The paper's "GFLOPs" are multiply-accumulates (GMACs) of one view, effvid's convention (conv,
linear and matmul; BatchNorm excluded): R(2+1)D-18 at 16 x 112 x 112 along [c, f, t, t, t] and
SlowFast-4x16-R50 at its 256 test crop along [c, s, t, s, f], from the registered default specs.
SlowFast's PAS-5 is within 5% because its reduced slow widths round to the nearest integer
(:mod:`effvid.models.slowfast`): multiples of 8 made epsilon_c cost x0.537, not x0.516, and PAS-5 1.48.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import io
import json

import pytest

from effvid.commands import flops as flops_command

TABLE_1 = {
    "r2plus1d_18": ("c,f,t,t,t", (40.8, 20.4, 10.2, 5.4, 3.2, 2.5)),
    "slowfast_4x16_r50": ("c,s,t,s,f", (36.6, 18.9, 10.2, 5.1, 2.9, 1.4)),
}


@functools.cache
def reduce_steps(name: str, operators: str) -> tuple[float, ...]:
    """GMACs of the base and of every step, as `effvid flops NAME --reduce OPERATORS --json` prints them."""
    parser = argparse.ArgumentParser(prog="effvid")
    flops_command.register(parser.add_subparsers())
    args = parser.parse_args(["flops", name, "--reduce", operators, "--json"])
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        assert args.run(args) == 0
    out = json.loads(stdout.getvalue())
    assert not any(step["pruned"] for step in out["reduce"])
    return (out["gmacs"], *(step["gmacs"] for step in out["reduce"]))


CASES = [pytest.param(name, step, id=f"{name}-PAS-{step}") for name in TABLE_1 for step in range(6)]


@pytest.mark.parametrize("name, step", CASES)
def test_every_step_is_within_5_percent_of_table_1(name, step):
    operators, paper = TABLE_1[name]
    assert reduce_steps(name, operators)[step] == pytest.approx(paper[step], rel=0.05)
