"""An OpenAI-compatible chat-completions server on 127.0.0.1 with scripted faults.

Each request takes the next behaviour from ``script`` (then ``default``):

``"good"``        valid answers for every review in the request
``"malformed"``   a message that is not JSON
``"bad_label"``   JSON whose labels contradict the scores (schema-invalid)
``"drop_one"``    valid answers except for the first review
``("status", code)`` / ``("status", code, retry_after)``  an HTTP error
``("sleep", s)``  answers after ``s`` seconds (a client timeout when ``s`` is long)
``"plain"``       a short plain-text paragraph (segment descriptions)
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

NEGATIVE_CUES = ("慢", "slow", "bad", "差", "贵")


def good_result(review: dict[str, Any]) -> dict[str, Any]:
    text = review["text"]
    negative = any(c in text for c in NEGATIVE_CUES)
    aspects = [{"aspect": "logistics", "polarity": "negative"}] if negative else [
        {"aspect": "quality", "polarity": "positive"}]
    return {"id": review["id"], "lang": "zh" if any("\u4e00" <= c <= "\u9fff" for c in text)
            else "en", "sentiment": -0.9 if negative else 0.9,
            "label": "negative" if negative else "positive", "aspects": aspects,
            "keywords": [text[:10]]}


class FakeLLM:
    def __init__(self) -> None:
        self.script: deque[Any] = deque()
        self.default: Any = "good"
        self.requests: list[dict[str, Any]] = []
        self.statuses: list[int] = []
        self._lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with fake._lock:
                    fake.requests.append(body)
                    action = fake.script.popleft() if fake.script else fake.default
                fake._respond(self, body, action)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def reviews_sent(self) -> list[str]:
        """Every review text sent, over all requests (retries included)."""
        out = []
        for body in self.requests:
            content = json.loads(body["messages"][1]["content"])
            out.extend(r["text"] for r in content["reviews"])
        return out

    # ------------------------------------------------------------------ internals
    def _respond(self, h: BaseHTTPRequestHandler, body: dict[str, Any], action: Any) -> None:
        if isinstance(action, tuple) and action[0] == "status":
            self._send(h, action[1], {"error": {"message": "scripted", "type": "x"}},
                       {"Retry-After": str(action[2])} if len(action) > 2 else {})
            return
        if isinstance(action, tuple) and action[0] == "sleep":
            time.sleep(action[1])
            action = "good"
        if action == "plain":
            self._send(h, 200, self._completion(body, "Big spenders who love quality.", 0))
            return
        reviews = json.loads(body["messages"][1]["content"])["reviews"]
        results = [good_result(r) for r in reviews]
        if action == "malformed":
            content = "Sure! Here is the analysis: {results: [oops"
        elif action == "bad_label":
            content = json.dumps({"results": [{**r, "label": "negative", "sentiment": 0.9}
                                              for r in results]})
        elif action == "drop_one":
            content = json.dumps({"results": results[1:]}, ensure_ascii=False)
        else:
            content = json.dumps({"results": results}, ensure_ascii=False)
        self._send(h, 200, self._completion(body, content, len(reviews)))

    def _completion(self, body: dict[str, Any], content: str, n: int) -> dict[str, Any]:
        return {
            "id": "chatcmpl-1", "object": "chat.completion", "created": 0,
            "model": body.get("model", "m"),
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": content}}],
            "usage": {"prompt_tokens": 100 * n, "completion_tokens": 50,
                      "total_tokens": 100 * n + 50}}

    def _send(self, h: BaseHTTPRequestHandler, code: int, doc: dict[str, Any],
              headers: dict[str, str] | None = None) -> None:
        data = json.dumps(doc, ensure_ascii=False).encode()
        with self._lock:
            self.statuses.append(code)
        h.send_response(code)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            h.send_header(k, v)
        h.end_headers()
        # a client that timed out has gone away: that is the scenario under test
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            h.wfile.write(data)
