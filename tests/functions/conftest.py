from __future__ import annotations

import pytest

PYTHON_HANDLER = """
import os

def handler(request):
    print("got", request["method"], request["path"], flush=True)
    return {
        "status": 200,
        "headers": {"content-type": "application/json", "x-handled-by": "python"},
        "body": {"path": request["path"], "query": request["query"], "body": request["body"], "greeting": os.environ.get("GREETING", "none"), "headers": request["headers"]},
    }
"""

NODE_HANDLER = """
export default async (request) => {
  console.log("node got", request.method, request.path);
  return { status: 201, headers: { "content-type": "application/json", "x-handled-by": "node" }, body: { path: request.path, greeting: process.env.GREETING || "none", body: request.body } };
};
"""


@pytest.fixture(autouse=True)
def _fresh_runtime_probe():
    """A test may change what the host offers (monkeypatched): the probe is made again next time."""
    yield
    from functions.runtime import available_runtimes

    available_runtimes.cache_clear()


def create(api, slug="hello", runtime="python3.11", code=PYTHON_HANDLER, **extra):
    response = api.post("functions", {"slug": slug, "runtime": runtime, "code": code, **extra})
    assert response.status_code == 201, response.content
    return response.json()


def deploy(api, function_id, **body):
    response = api.post(f"functions/{function_id}/deploy", body or None)
    assert response.status_code == 201, response.content
    return response.json()
