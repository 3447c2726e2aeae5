"""POST /v1/models/{id}/export: a key downloads its fine-tune as GGUF (merged or adapter), nobody else's."""
import gguf
import pytest
from fastapi.testclient import TestClient

from tests.export.conftest import export_base, tiny_run  # noqa: F401 (fixtures)
from tunesmith.registry import keys, models
from tunesmith.serve.app import create_app
from tunesmith.serve.settings import ServeSettings


@pytest.fixture
def api(tmp_path, export_base, tiny_run):  # noqa: F811
    settings = ServeSettings(home=tmp_path / "home", bases=[str(export_base)], run_jobs=False)
    app = create_app(settings)
    with TestClient(app) as client:
        owner, secret = keys.create_key(app.state.db)
        with app.state.db.transaction() as tx:
            models.add_model(tx, "ft:tiny::abc", owner, "ftjob-abc", str(export_base), str(tiny_run))
        client.headers_for = {"owner": {"Authorization": f"Bearer {secret}"},
                              "other": {"Authorization": f"Bearer {keys.create_key(app.state.db)[1]}"}}
        yield client


def test_owner_downloads_gguf_and_adapter(api, tmp_path):
    response = api.post("/v1/models/ft:tiny::abc/export", headers=api.headers_for["owner"], json={"type": "q8_0"})
    assert response.status_code == 200, response.text
    assert 'filename="ft_tiny__abc-q8_0.gguf"' in response.headers["content-disposition"]
    (tmp_path / "model.gguf").write_bytes(response.content)
    fields = gguf.GGUFReader(tmp_path / "model.gguf").fields
    assert fields["general.type"].contents() == "model" and fields["general.file_type"].contents() == 7
    adapter = api.post("/v1/models/ft:tiny::abc/export", headers=api.headers_for["owner"], json={"format": "lora"})
    (tmp_path / "adapter.gguf").write_bytes(adapter.content)
    assert gguf.GGUFReader(tmp_path / "adapter.gguf").fields["general.type"].contents() == "adapter"


def test_other_keys_get_404_and_bad_requests_400(api, export_base):  # noqa: F811
    assert api.post("/v1/models/ft:tiny::abc/export", headers=api.headers_for["other"]).status_code == 404
    response = api.post(f"/v1/models/{export_base.name}/export", headers=api.headers_for["owner"], json={"format": "lora"})
    assert response.status_code == 400 and "no LoRA adapter" in response.json()["error"]["message"]
    assert api.post("/v1/models/ft:tiny::abc/export", headers=api.headers_for["owner"],
                    json={"type": "q5_k"}).status_code == 400
