"""Servers the serve tests share: `tunesmith serve` as a real process, and the app in-process with a key."""
import pytest
from fastapi.testclient import TestClient

from tests.serve.server import served
from tunesmith.registry import keys
from tunesmith.serve.app import create_app
from tunesmith.serve.settings import ServeSettings


@pytest.fixture
def server(tmp_path, tiny_model_dir):
    """`tunesmith serve --base TINY` in HOME = tmp_path/home: (root URL, HOME)."""
    with served(tmp_path / "home", tiny_model_dir) as url:
        yield url, tmp_path / "home"


@pytest.fixture
def api(tmp_path, tiny_model_dir):
    """The app in-process, no job worker (run_jobs=False), a client carrying a new key; app_state for the registry."""
    app = create_app(ServeSettings(home=tmp_path / "home", bases=[str(tiny_model_dir)], run_jobs=False))
    with TestClient(app) as client:
        client.headers["Authorization"] = f"Bearer {keys.create_key(app.state.db)[1]}"
        client.app_state = app.state
        yield client


@pytest.fixture
def served_openai(tmp_path, tiny_model_dir):
    """The app in-process (no job worker) and the official openai client over it with a new key: (client, model)."""
    import openai

    app = create_app(ServeSettings(home=tmp_path / "home", bases=[str(tiny_model_dir)], run_jobs=False))
    with TestClient(app) as http:
        secret = keys.create_key(app.state.db)[1]
        yield openai.OpenAI(base_url="http://testserver/v1", api_key=secret, http_client=http, max_retries=0), \
            tiny_model_dir.name
