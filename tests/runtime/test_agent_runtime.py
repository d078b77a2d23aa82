"""The agent's side of the runtime (instances/agent.py `Runtime`), in-process: bounded
conversations, concurrent exchanges of one conversation, counters that only grow, the budget."""

from __future__ import annotations

import json
import os
import threading
from types import SimpleNamespace

import pytest

from instances import agent as agent_module
from instances.agent import Refused, Runtime, count_tokens


def runtime(tmp_path, config=None) -> Runtime:
    fake = SimpleNamespace(state_dir=str(tmp_path), instance_id="demo", app=None, config_bytes=lambda: json.dumps(config or {}).encode())
    return Runtime(fake)


def test_the_token_count_is_one_per_four_characters_rounded_up():
    assert [count_tokens(t) for t in ("", "a", "abcd", "abcde", "é" * 8)] == [0, 1, 1, 2, 2]


def test_concurrent_exchanges_of_one_conversation_all_land(tmp_path):
    rt = runtime(tmp_path)
    threads = [threading.Thread(target=rt.chat, args=({"message": f"m{n}", "conversation_id": "shared", "user": f"u{n % 4}"},)) for n in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    messages = rt.conversation("shared")["messages"]
    assert len(messages) == 40 and {m["content"] for m in messages if m["role"] == "user"} == {f"m{n}" for n in range(20)}
    day = next(iter(rt.usage_report()["days"].values()))
    assert day["requests"] == 20 and day["user_count"] == 4 and day["tokens_in"] == sum(count_tokens(f"m{n}") for n in range(20))
    again = Runtime(rt.agent)  # the agent restarted: its counters and epoch are on disk
    assert again.usage_report() == rt.usage_report()


def test_conversations_and_their_messages_are_bounded(tmp_path, monkeypatch):
    monkeypatch.setattr(agent_module, "CONVERSATIONS_MAX", 3)
    monkeypatch.setattr(agent_module, "MESSAGES_MAX", 4)
    rt = runtime(tmp_path)
    for n in range(5):
        rt.chat({"message": "hi", "conversation_id": f"c{n}"})
        os.utime(os.path.join(rt.dir, f"c{n}.json"), (n, n))  # the order they were written, whatever the clock's resolution
    assert sorted(c["id"] for c in rt.conversations("limit=100")["results"]) == ["c2", "c3", "c4"]
    for n in range(3):
        rt.chat({"message": f"again {n}", "conversation_id": "c4"})
    assert [m["content"] for m in rt.conversation("c4")["messages"]][::2] == ["again 1", "again 2"]
    with pytest.raises(ValueError):
        rt.conversations("limit=0")
    assert rt.conversation("../secrets") is None


def test_policy_refusals(tmp_path):
    rt = runtime(tmp_path, {"model_policy": {"allowed_models": ["a"], "max_tokens_per_day": 2}})
    with pytest.raises(Refused) as refused:
        rt.chat({"message": "hi", "model": "b"})
    assert refused.value.status == 422 and refused.value.extra == {"allowed_models": ["a"]}
    assert rt.chat({"message": "hi"})["model"] == "a"
    with pytest.raises(Refused) as over:
        rt.chat({"message": "hi"})
    assert over.value.status == 429 and 0 < int(over.value.headers["Retry-After"]) <= 86400
    for bad in ({"message": ""}, {"message": "x" * 8001}, {"message": "\ud800"}, {"message": "hi", "conversation_id": "a/b"}, {"message": "hi", "user": 5}):
        with pytest.raises(ValueError):
            rt.chat(bad)


def test_app_mode_forwards_the_chat_to_the_program_and_keeps_the_rest(tmp_path):
    """In app mode the program's `POST /chat` answers (docs/agent.md has the contract); the policy,
    the record and the counts stay the agent's."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    seen = []

    class Program(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            seen.append(body)
            good = body["message"] != "break"
            data = json.dumps({"reply": f"program says {body['message']}", "skill": "llm"} if good else {"oops": 1}).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Program)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        rt = runtime(tmp_path, {"model_policy": {"allowed_models": ["m1"]}})
        rt.agent.app = SimpleNamespace(port=server.server_port)
        first = rt.chat({"message": "hello", "conversation_id": "app-1", "user": "bob"})
        assert first["reply"] == "program says hello" and first["skill"] == "llm" and first["model"] == "m1"
        assert first["tokens_out"] == count_tokens("program says hello")  # the agent's count, not the program's
        rt.chat({"message": "again", "conversation_id": "app-1"})
        assert seen[0]["history"] == [] and [m["content"] for m in seen[1]["history"]] == ["hello", "program says hello"]
        assert seen[0]["user"] and seen[0]["user"] != "bob"  # the program gets the hash too
        with pytest.raises(Refused) as refused:
            rt.chat({"message": "hello", "model": "other"})
        assert refused.value.status == 422 and len(seen) == 2  # refused before the program is asked
        with pytest.raises(Refused) as broken:
            rt.chat({"message": "break"})
        assert broken.value.status == 502
    finally:
        server.shutdown()
        server.server_close()
    rt.agent.app = SimpleNamespace(port=1)  # nothing listens
    with pytest.raises(Refused) as gone:
        rt.chat({"message": "hi"})
    assert gone.value.status == 502
