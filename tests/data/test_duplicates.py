import random
import time

from tunesmith.data.duplicates import near_duplicate_clusters


def test_near_duplicates_scale_linearly():
    rng = random.Random(0)
    contents = [" ".join(f"w{rng.randrange(3000)}" for _ in range(40)) for _ in range(5000)]
    words = contents[100].split()
    contents.append(" ".join(words[:20] + ["changed"] + words[21:]))
    started = time.perf_counter()
    clusters = near_duplicate_clusters(contents)
    assert [sorted(members) for members, _ in clusters] == [[100, 5000]]
    assert 0.8 <= clusters[0][1] < 1.0
    assert time.perf_counter() - started < 2.0
