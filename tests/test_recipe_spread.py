"""benchmarks/recipe_spread.py's summary over seeds: passes counted from the gates, the worst draws named."""
import pytest

from tests.benchmark_script import load_benchmark


@pytest.fixture(scope="module")
def bench():
    return load_benchmark("recipe_spread")


def run(finetuned: float, perplexity_change: float, passed: bool) -> dict:
    return {"held_out": {"base": 0.12, "finetuned": finetuned}, "perplexity_change": perplexity_change, "gates_passed": passed}


def test_the_spread_counts_the_seeds_that_passed_and_names_the_others(bench):
    # the demo recipe's three EPYC-like draws: one under the floor, one forgetting past the gate
    runs = {42: run(0.683, 0.032, False), 7: run(0.885, 0.003, True), 3: run(0.834, 0.065, False)}
    summary = bench.spread(runs)
    assert summary["seeds"] == 3 and summary["passed_every_gate"] == 1
    assert summary["failed_seeds"] == [42, 3]
    assert summary["held_out_min"] == 0.683 and summary["held_out_max"] == 0.885
    assert summary["held_out_median"] == 0.834
    assert summary["perplexity_change_max"] == 0.065


def test_a_run_without_a_suite_task_leaves_its_figures_out(bench):
    summary = bench.spread({1: {"gates_passed": True}})
    assert summary["passed_every_gate"] == 1 and summary["failed_seeds"] == []
    assert summary["held_out_min"] is None and summary["held_out_median"] is None and summary["perplexity_change_max"] is None
