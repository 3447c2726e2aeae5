"""benchmarks/continual.py's target check: on the seed means, with each margin's paired standard error."""
import math

import pytest

from tests.benchmark_script import load_benchmark


@pytest.fixture(scope="module")
def bench():
    return load_benchmark("continual")


def row(seed, variant, after, **scores):
    return {"seed": seed, "variant": variant, "after": after, "general_ppl": 100.0, **scores}


def test_a_forgotten_task_misses_the_target_and_its_paired_error_comes_from_the_seed_differences(bench):
    rows = [
        row(1, "-", "u1", **{"u1.facts": 0.80}), row(2, "-", "u1", **{"u1.facts": 0.90}),
        # u2 lifts u1 on both seeds (the best), u3 loses 0.10 on seed 1 and 0.02 on seed 2
        row(1, "tunesmith", "u2", **{"u1.facts": 0.86, "u2.facts": 0.70}),
        row(2, "tunesmith", "u2", **{"u1.facts": 0.94, "u2.facts": 0.74}),
        row(1, "naive", "u2", **{"u1.facts": 0.50, "u2.facts": 0.60}),
        row(2, "naive", "u2", **{"u1.facts": 0.60, "u2.facts": 0.80}),
    ]
    rows += [row(1, "tunesmith", "u3", **{"u1.facts": 0.76, "u2.facts": 0.70, "u3.facts": 0.5}),
             row(2, "tunesmith", "u3", **{"u1.facts": 0.92, "u2.facts": 0.74, "u3.facts": 0.5})]
    checks = bench.target_checks(bench.mean_rows(rows), rows)

    kept = {(c["task"], c["after"]): c for c in checks["tunesmith"]["kept"]}
    u1_after_u3 = kept[("u1.facts", "u3")]
    assert u1_after_u3["best"] == pytest.approx(0.90) and u1_after_u3["score"] == pytest.approx(0.84)
    assert not u1_after_u3["met"] and not checks["tunesmith"]["met"]
    # per seed: -0.10 and -0.02 against the same seed's u2 score; SE = sd / sqrt(2) = 0.04
    assert u1_after_u3["paired_se"] == pytest.approx(math.sqrt((0.04 ** 2 + 0.04 ** 2) / 1) / math.sqrt(2))
    assert kept[("u2.facts", "u3")]["met"] and kept[("u2.facts", "u3")]["paired_se"] == pytest.approx(0.0)

    gained = checks["tunesmith"]["new_task"][0]  # u2: 0.72 against naive's 0.70; per seed +0.10 and -0.06
    assert gained["met"] and gained["baseline"] == "naive"
    assert gained["paired_se"] == pytest.approx(math.sqrt(2 * 0.08 ** 2) / math.sqrt(2))


def test_one_seed_has_no_paired_error(bench):
    rows = [row(1, "-", "u1", **{"u1.facts": 0.8}), row(1, "tunesmith", "u2", **{"u1.facts": 0.8, "u2.facts": 0.7})]
    checks = bench.target_checks(bench.mean_rows(rows), rows)
    assert checks["tunesmith"]["met"] and checks["tunesmith"]["kept"][0]["paired_se"] is None
