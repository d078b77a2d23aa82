"""The Python runtime of a function: imports the tenant's handler, then serves it over HTTP.

Runs inside the function's sandbox (its own uid, filesystem view and network namespace:
instances/providers/sandbox.py) with only the standard library. The control plane binds the
listening unix socket and passes it as `--listen-fd`; this process never opens a socket of its own.

    GET  /health   200 once the handler is imported (it is imported before serving anything)
    POST /invoke   the request envelope (JSON) in, the response envelope (JSON) out

docs/functions.md describes both envelopes. An import error, a syntax error or a module without a
callable `handler` exits with status 1 before serving: the deploy that started it fails.
"""

import base64
import importlib.util
import json
import socket
import socketserver
import sys
import traceback
from http.server import BaseHTTPRequestHandler

MAX_ENVELOPE = 16 * 1024 * 1024


def load(path):
    spec = importlib.util.spec_from_file_location("handler", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules["handler"] = module
    spec.loader.exec_module(module)
    handler = getattr(module, "handler", None)
    if not callable(handler):
        raise TypeError(f"{path} defines no function `handler(request)`")
    return handler


def envelope(result):
    """The handler's return value as the response envelope."""
    if result is None:
        return {"status": 204, "headers": {}, "body": "", "body_encoding": "text"}
    if isinstance(result, (bytes, bytearray)):
        return {"status": 200, "headers": {"content-type": "application/octet-stream"}, "body": base64.b64encode(result).decode(), "body_encoding": "base64"}
    if isinstance(result, str):
        return {"status": 200, "headers": {"content-type": "text/plain; charset=utf-8"}, "body": result, "body_encoding": "text"}
    if isinstance(result, dict) and ({"status", "body", "headers"} & set(result)):
        headers = {str(k): str(v) for k, v in (result.get("headers") or {}).items()}
        body = result.get("body", "")
        encoding = result.get("body_encoding", "text")
        if isinstance(body, (bytes, bytearray)):
            body, encoding = base64.b64encode(body).decode(), "base64"
        elif not isinstance(body, str):
            body = json.dumps(body)
            headers.setdefault("content-type", "application/json")
        return {"status": int(result.get("status", 200)), "headers": headers, "body": body, "body_encoding": encoding}
    return {"status": 200, "headers": {"content-type": "application/json"}, "body": json.dumps(result), "body_encoding": "text"}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def _send(self, status, payload):
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        if self.path == "/health":
            self._send(200, {"ok": True})
        else:
            self._send(404, {"error": "not found"})

    def do_POST(self):
        if self.path != "/invoke":
            return self._send(404, {"error": "not found"})
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_ENVELOPE:
            return self._send(413, {"error": "request too large"})
        try:
            request = json.loads(self.rfile.read(length))
        except ValueError:
            return self._send(400, {"error": "bad envelope"})
        try:
            response = envelope(self.server.handler(request))
        except Exception as exc:  # the tenant's code: its traceback goes to its logs
            traceback.print_exc()
            sys.stderr.flush()
            return self._send(500, {"error": f"the handler raised {type(exc).__name__}"})
        self._send(200, response)

    def log_message(self, *args):
        pass


class Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True

    def __init__(self, fd, handler):
        socketserver.BaseServer.__init__(self, None, Handler)
        self.socket = socket.socket(fileno=fd)
        self.handler = handler

    def get_request(self):
        conn, _ = self.socket.accept()
        return conn, ("function", 0)


def main():
    args = dict(zip(sys.argv[1::2], sys.argv[2::2]))
    try:
        handler = load(args["--handler"])
    except BaseException:
        traceback.print_exc()
        sys.stderr.flush()
        sys.exit(1)
    Server(int(args["--listen-fd"]), handler).serve_forever()


if __name__ == "__main__":
    main()
