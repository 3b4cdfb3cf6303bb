"""A local stand-in for Mistral's chat-completions HTTP API, for tests only.

The production path stays the real `mistralai` SDK; this server speaks its wire format
(`POST /v1/chat/completions`) on loopback, records every request, and answers from a script.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

Reply = tuple[int, Any, float]  # status, body (dict = message to wrap, str = raw), delay seconds
Script = Callable[[dict[str, Any]], Reply]

_ids = itertools.count(1)


def message(content: str | None = None, tool_calls: list[dict[str, Any]] | None = None) -> dict:
    return {"role": "assistant", "content": content, "tool_calls": tool_calls}


def completion(msg: dict[str, Any], model: str = "mistral-small-latest") -> dict[str, Any]:
    return {
        "id": f"cmpl-{next(_ids)}",
        "object": "chat.completion",
        "model": model,
        "created": int(time.time()),
        "usage": {"prompt_tokens": 100, "completion_tokens": 50, "total_tokens": 150},
        "choices": [
            {
                "index": 0,
                "message": msg,
                "finish_reason": "tool_calls" if msg.get("tool_calls") else "stop",
            }
        ],
    }


def tool_call(name: str, arguments: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": f"call{next(_ids)}",
        "type": "function",
        "function": {"name": name, "arguments": json.dumps(arguments)},
    }


class MistralStandIn:
    def __init__(self, script: Script) -> None:
        self.script = script
        self.requests: list[dict[str, Any]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("content-length", 0))))
                outer.requests.append(
                    {"path": self.path, "body": body, "auth": self.headers.get("authorization")}
                )
                status, payload, delay = outer.script(body)
                if delay:
                    time.sleep(delay)
                data = (
                    payload
                    if isinstance(payload, str)
                    else json.dumps(completion(payload) if status == 200 else payload)
                )
                try:
                    self.send_response(status)
                    self.send_header("content-type", "application/json")
                    self.send_header("content-length", str(len(data.encode())))
                    self.end_headers()
                    self.wfile.write(data.encode())
                except (BrokenPipeError, ConnectionResetError):
                    pass

            def log_message(self, *args: object) -> None:
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()


def sequence(*replies: Reply) -> Script:
    """Answer with these replies in order, repeating the last one."""
    it = iter(replies)
    last: list[Reply] = [replies[-1]]

    def script(_: dict[str, Any]) -> Reply:
        with contextlib.suppress(StopIteration):
            last[0] = next(it)
        return last[0]

    return script
