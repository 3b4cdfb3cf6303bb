"""An action target stand-in (a firewall, a directory, a chat webhook, Kibana): a local HTTP
server that records every call, its body and its headers."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from tests.conftest import free_port


class Target:
    """A firewall/directory API stand-in: records every call; `/hang/...` never answers."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict]] = []
        self.keys: list[str] = []  # idempotency keys (proposal ids) of the calls
        self.headers: list[dict[str, str]] = []  # every call's headers, names in lower case
        self.release = threading.Event()
        target = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["content-length"])))
                target.calls.append((self.path, body))
                target.keys.append(self.headers.get("idempotency-key", ""))
                target.headers.append({k.lower(): v for k, v in self.headers.items()})
                if self.path.startswith("/hang"):
                    target.release.wait(30)
                try:  # a hung call's caller (a killed worker) may be gone by now
                    self.send_response(200)
                    self.send_header("content-type", "application/json")
                    self.end_headers()
                    self.wfile.write(b'{"ok": true}')
                except (BrokenPipeError, ConnectionResetError):
                    pass

            def log_message(self, *args: object) -> None:
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
