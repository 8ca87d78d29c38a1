"""A tiny OpenAI-compatible chat server on loopback, for tests of code that talks to such servers.

It answers `POST /v1/chat/completions` with a JSON object that follows the request's
`response_format` schema (values derived from the request seed), can inject HTTP faults (429 with
Retry-After, 500, ...) for the first requests, can delay answers, and records every request and
the largest number served at once. It also works as a fault-injecting proxy in front of a real
server (`upstream=`). Loopback only; it stops with `close()` or at the end of a `with` block.
"""
from __future__ import annotations

import json
import random
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable


def sample_from_schema(schema: dict[str, Any], rng: random.Random) -> Any:
    """A value that satisfies the simple schemas used in specs (enum, const, types, bounds, lengths)."""
    if "enum" in schema:
        return rng.choice(schema["enum"])
    if "const" in schema:
        return schema["const"]
    t = schema.get("type", "string")
    if isinstance(t, list):
        t = next((x for x in t if x != "null"), "string")
    if t == "object":
        props = schema.get("properties", {})
        return {k: sample_from_schema(v, rng) for k, v in props.items()}
    if t == "array":
        return [sample_from_schema(schema.get("items", {}), rng) for _ in range(max(1, schema.get("minItems", 1)))]
    if t == "integer":
        return rng.randint(int(schema.get("minimum", 0)), int(schema.get("maximum", 100)))
    if t == "number":
        return round(rng.uniform(float(schema.get("minimum", 0)), float(schema.get("maximum", 100))), 2)
    if t == "boolean":
        return rng.random() < 0.5
    words = ["quiet", "corner", "store", "order", "fresh", "delivery", "weekly", "service", "local", "market",
             "repair", "ticket", "online", "garden", "supply", "studio", "river", "harbor", "bakery", "travel"]
    text = " ".join(rng.choice(words) for _ in range(rng.randint(3, 7))).capitalize()
    lo, hi = int(schema.get("minLength", 0)), int(schema.get("maxLength", 200))
    return (text + " x" * lo)[: max(lo, min(hi, len(text)))]


class FakeOpenAIServer:
    def __init__(self, faults: list[int] | None = None, retry_after: float | None = None, delay: float = 0.0,
                 answer: Callable[[dict[str, Any]], str] | None = None, upstream: str | None = None,
                 require_key: str | None = None, hold_after: int | None = None, echo_auth: int | None = None) -> None:
        """`hold_after=k`: answer k requests, then hold every later one until `release()` (a run
        that provably cannot finish before the test says so). `echo_auth=status`: answer every
        request with that HTTP status and an error body quoting the Authorization header, as
        careless servers do."""
        self.faults = list(faults or [])
        self.retry_after = retry_after
        self.delay = delay
        self.answer = answer
        self.upstream = upstream.rstrip("/") if upstream else None
        self.require_key = require_key
        self.hold_after = hold_after
        self.echo_auth = echo_auth
        self.held = 0  # requests waiting for release()
        self._gate = threading.Event()
        self.requests: list[dict[str, Any]] = []
        self.auth_headers: list[str | None] = []
        self.statuses: list[int] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:  # quiet
                pass

            def _send(self, status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:  # /v1/models, for clients that probe
                self._send(200, {"object": "list", "data": [{"id": "fake", "object": "model"}]})

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
                with server._lock:
                    server.requests.append(body)
                    server.auth_headers.append(self.headers.get("Authorization"))
                    fault = server.faults.pop(0) if server.faults else None
                    server.in_flight += 1
                    server.max_in_flight = max(server.max_in_flight, server.in_flight)
                    hold = server.hold_after is not None and len(server.requests) > server.hold_after
                    server.held += hold
                try:
                    if hold:
                        server._gate.wait()
                        with server._lock:
                            server.held -= 1
                    if server.echo_auth:
                        server.statuses.append(server.echo_auth)
                        msg = f"invalid header Authorization: {self.headers.get('Authorization')}"
                        return self._send(server.echo_auth, {"error": {"message": msg, "type": "auth"}})
                    if server.require_key and self.headers.get("Authorization") != f"Bearer {server.require_key}":
                        server.statuses.append(401)
                        return self._send(401, {"error": {"message": "invalid api key", "type": "auth"}})
                    if fault:
                        server.statuses.append(fault)
                        hdr = {"Retry-After": str(server.retry_after)} if server.retry_after is not None else {}
                        return self._send(fault, {"error": {"message": f"injected {fault}", "type": "fault"}}, hdr)
                    if server.delay:
                        time.sleep(server.delay)
                    if server.upstream:
                        status, payload = server._forward(self.path, body)
                        server.statuses.append(status)
                        return self._send(status, payload)
                    server.statuses.append(200)
                    self._send(200, server._complete(body))
                finally:
                    with server._lock:
                        server.in_flight -= 1

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/v1"

    def _forward(self, path: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        req = urllib.request.Request(self.upstream + path.removeprefix("/v1"), data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"}, method="POST")
        try:
            with urllib.request.urlopen(req, timeout=300) as resp:
                return resp.status, json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read() or b"{}")

    def _complete(self, body: dict[str, Any]) -> dict[str, Any]:
        if self.answer is not None:
            text = self.answer(body)
        else:
            fmt = body.get("response_format") or {}
            schema = (fmt.get("json_schema") or {}).get("schema") or fmt.get("schema") or {"type": "object", "properties": {"text": {"type": "string"}}}
            rng = random.Random(json.dumps([body.get("seed"), body.get("messages")], sort_keys=True))
            text = json.dumps(sample_from_schema(schema, rng))
        return {
            "id": f"chatcmpl-{len(self.requests)}", "object": "chat.completion", "created": int(time.time()),
            "model": body.get("model", "fake"),
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 10, "completion_tokens": 10, "total_tokens": 20},
        }

    def release(self) -> None:
        """Answer the held requests and every later one."""
        self._gate.set()

    def close(self) -> None:
        self._gate.set()
        self._httpd.shutdown()
        self._httpd.server_close()

    def __enter__(self) -> "FakeOpenAIServer":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def serve_forever(port_file: str, **kwargs: Any) -> None:  # pragma: no cover - used by subprocess tests
    """Run a fake server in this process and write its base URL to `port_file`."""
    srv = FakeOpenAIServer(**kwargs)
    with open(port_file + ".tmp", "w") as fh:
        fh.write(srv.base_url)
    import os

    os.replace(port_file + ".tmp", port_file)
    while True:
        time.sleep(3600)
