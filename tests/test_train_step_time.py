"""benchmarks/train_step_time.py's ratios: one switch's sides over the other's, per setting both ran, over rounds."""
from tests.benchmark_script import load_benchmark


def side(batch: int, compiled: bool, grouped: bool, step: float) -> dict:
    return {"batch_size": batch, "compile": compiled, "grouped_attention": grouped, "mean_step_s": step}


def test_ratios_pair_the_sides_that_differ_in_one_switch_and_average_the_rounds():
    bench = load_benchmark("train_step_time")
    sides = [side(16, True, True, 1.2), side(16, True, False, 1.6), side(16, True, True, 1.4), side(16, True, False, 1.6),
             side(16, False, False, 2.0), side(4, True, True, 0.5)]  # batch 4 ran one side only
    assert bench.ratios(sides, "grouped_attention", "batch_size", "compile") == {"batch_size=16/compile=True": 0.812}
    assert bench.ratios(sides, "compile", "batch_size", "grouped_attention") == {"batch_size=16/grouped_attention=False": 0.8}
