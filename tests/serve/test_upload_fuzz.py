"""Generated malformed JSONL (random bytes, invalid UTF-8, huge lines, deep nesting, wrong types, missing
fields) through the data check and the upload route: never a crash or a 500, every bad row named by its line (in the
upload's 400, or in the status_details of a file the background check refused), no staging file left behind."""
import json

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings, strategies as st

from tunesmith.registry import keys
from tunesmith.serve.app import create_app
from tunesmith.serve.settings import ServeSettings
from tunesmith.serve.training_file import check_training_file

MAX_ROW_BYTES = 2000
GOOD = json.dumps({"messages": [{"role": "user", "content": "What is gold?"},
                                {"role": "assistant", "content": "Au."}]}).encode()
json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.text(alphabet="xyz ", max_size=5),
                           lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from("xyz"), inner, max_size=3),
                           max_leaves=8)
# (kind, line): the kinds other than "good" and "noise" are errors whatever the rest of the file holds
rows = st.one_of(
    st.just(("good", GOOD)),
    st.binary(max_size=40).map(lambda b: ("noise", b.replace(b"\n", b" "))),
    st.binary(max_size=20).map(lambda b: ("invalid_utf8", b"\xff\xfe" + b.replace(b"\n", b" "))),
    st.integers(1500, 50_000).map(lambda n: ("deep", b"[" * n + b"]" * n)),
    st.integers(1, 3).map(lambda n: ("huge", GOOD.replace(b"Au.", b"A" * (MAX_ROW_BYTES * n)))),
    json_values.map(lambda v: ("wrong_type", json.dumps({"messages": v}).encode()))
    .filter(lambda row: not json.loads(row[1])["messages"]),  # empty or falsy: never a valid conversation
    st.just(("missing", json.dumps({"messages": [{"role": "user"}]}).encode())),
    json_values.filter(lambda v: not isinstance(v, dict)).map(lambda v: ("not_object", json.dumps(v).encode())),
)
files = st.lists(rows, min_size=1, max_size=8)
ALWAYS_BAD = {"invalid_utf8", "deep", "huge", "wrong_type", "missing", "not_object"}


def content(generated) -> bytes:
    return b"\n".join(line for _, line in generated) + b"\n"


@pytest.fixture(scope="module")
def api(tmp_path_factory, tiny_model_dir):
    home = tmp_path_factory.mktemp("fuzz") / "home"
    app = create_app(ServeSettings(home=home, bases=[str(tiny_model_dir)], run_jobs=False, max_row_bytes=MAX_ROW_BYTES))
    with TestClient(app, raise_server_exceptions=False) as client:
        client.headers["Authorization"] = f"Bearer {keys.create_key(app.state.db, pii_policy='allow')[1]}"
        yield client


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(generated=files)
def test_the_data_check_names_every_bad_line_and_never_raises(generated, tmp_path):
    path = tmp_path / "fuzz.jsonl"
    path.write_bytes(content(generated))
    report = check_training_file(path)
    lines = {error["line"] for error in report.errors}
    for number, (kind, _) in enumerate(generated, start=1):
        if kind in ALWAYS_BAD - {"huge"}:  # a huge line is only too long for the server's upload limit
            assert number in lines, (kind, number, report.errors)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(generated=files)
def test_uploads_answer_200_or_a_400_naming_the_bad_lines(api, generated):
    response = api.post("/v1/files", data={"purpose": "fine-tune"}, files={"file": ("fuzz.jsonl", content(generated))})
    assert response.status_code in (200, 400), response.text
    bad = [number for number, (kind, _) in enumerate(generated, start=1) if kind in ALWAYS_BAD]
    if response.status_code == 200:  # the screen passed it; the full check runs after the answer
        file_id = response.json()["id"]
        assert api.app.state.file_checks.wait(file_id, 60)
        final = api.get(f"/v1/files/{file_id}").json()
        assert final["status"] in ("processed", "error"), final
        if final["status"] == "processed":
            assert not bad
        for number in bad[:20]:
            assert f"line {number}," in final["status_details"], (number, final)
    else:
        message = response.json()["error"]["message"]
        for number in bad[:20]:  # the message lists the first 20
            assert f"line {number}," in message, (number, message)
    assert not [p.name for p in api.app.state.settings.files_dir.glob(".*")]  # no staging file outlives a request
