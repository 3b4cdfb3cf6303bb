"""Webhook intake in production mode: `vigie serve --workers N` with Redis as store and broker
(triage goes to Celery workers, none running here, so every accepted batch stays countable),
driven by wrk (8 connections) replaying pre-signed, all-distinct Standard Webhooks requests.

    .venv/bin/python benchmarks/webhook_prod_bench.py [SECONDS] [API_PROCESSES]   # 15, 2

Signing happens before the run, so the load generator costs little CPU on this 2-core machine;
each request still carries a fresh webhook-id, verified and recorded by the server. After the
run: every 202 must be one stored batch (the pending intake list), plus at most one request per
connection still in flight when wrk stopped.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import redis
from standardwebhooks.webhooks import Webhook

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.webhook_bench import wait_healthy
from tests.conftest import RedisServer, free_port

SECRET = "whsec_" + "YmVuY2gtYmVuY2gtYmVuY2gtYmVuY2gtYmVuY2g="
CONNECTIONS = 8

LUA = r"""
-- `id` is a global: setup() sets it in each thread's own Lua state
local requests, n, threads = {}, 0, 1
local counter = 0
function setup(thread)
  thread:set("id", counter)
  counter = counter + 1
end
function init(args)
  threads = tonumber(args[2])
  local i = 0
  for line in io.lines(args[1]) do
    if i % threads == id then
      local sep = line:find("\t", 1, true)
      local sep2 = line:find("\t", sep + 1, true)
      local sep3 = line:find("\t", sep2 + 1, true)
      local headers = {
        ["webhook-id"] = line:sub(1, sep - 1),
        ["webhook-timestamp"] = line:sub(sep + 1, sep2 - 1),
        ["webhook-signature"] = line:sub(sep2 + 1, sep3 - 1),
        ["content-type"] = "application/json",
      }
      n = n + 1
      requests[n] = wrk.format("POST", "/webhooks/generic", headers, line:sub(sep3 + 1))
    end
    i = i + 1
  end
  n_used = 0
end
function request()
  n_used = n_used + 1
  return requests[((n_used - 1) % n) + 1]
end
"""


def presign(path: Path, count: int) -> None:
    signer = Webhook(SECRET)
    now = datetime.now(UTC)
    with path.open("w") as fh:
        for i in range(count):
            body = json.dumps(
                {
                    "@timestamp": now.isoformat(),
                    "event": {"id": f"bench-{i}", "kind": "alert", "module": "ids"},
                    "rule": {"name": f"Rule {i % 13}", "id": f"r{i % 13}"},
                    "host": {"name": f"host{i % 50}"},
                    "source": {"ip": f"198.51.100.{i % 200}"},
                }
            )
            msg = f"msg_{uuid.uuid4().hex}"
            sig = signer.sign(msg, now, body)
            fh.write(f"{msg}\t{int(now.timestamp())}\t{sig}\t{body}\n")


def main(seconds: float, processes: int) -> int:
    wrk = shutil.which("wrk")
    if wrk is None:
        print("skipped: wrk is not installed (Debian: apt-get install wrk)")
        return 0
    tmp = Path(tempfile.mkdtemp(prefix="vigie-whbench-"))
    redis_server = RedisServer(tmp, appendonly=True)  # everysec, as in production
    port = free_port()
    env = {
        **os.environ,
        "VIGIE_STORE_URL": redis_server.url(2),
        "VIGIE_BROKER_URL": redis_server.url(0),
        "VIGIE_WEBHOOK_SECRETS": f"generic:{SECRET}",
    }
    requests_file = tmp / "signed.tsv"
    # More than can be sent, none replayed: at 3,000 a second, a faster hour ran out (3,158/s,
    # and the replays were refused as such).
    presigned = int(seconds * 8000)
    presign(requests_file, presigned)
    (tmp / "replay.lua").write_text(LUA)
    server = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "vigie"),
            "serve",
            "--port",
            str(port),
            "--workers",
            str(processes),
        ],
        env=env,
        stdout=(tmp / "api.log").open("ab"),
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url)
        time.sleep(1)  # every API process up
        threads = 2
        out = subprocess.run(
            [
                wrk,
                f"-t{threads}",
                f"-c{CONNECTIONS}",
                f"-d{seconds:.0f}s",
                "--latency",
                "-s",
                str(tmp / "replay.lua"),
                url,
                "--",
                str(requests_file),
                str(threads),
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        total = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
        non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
        rejected = int(non2xx.group(1)) if non2xx else 0
        rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
        dist = out.split("Latency Distribution", 1)[1]
        p50 = re.search(r"50%\s+(\S+)", dist).group(1)  # type: ignore[union-attr]
        p99 = re.search(r"99%\s+(\S+)", dist).group(1)  # type: ignore[union-attr]
        stored = redis.Redis.from_url(env["VIGIE_STORE_URL"]).llen("vigie:intake:pending")
        accepted = total - rejected
        print(
            f"{processes} API process(es), wrk {CONNECTIONS} connections, {seconds:.0f}s: "
            f"{total:,} signed requests, {rate:,.0f} req/s, p50 {p50}, p99 {p99}, "
            f"non-2xx {rejected}"
        )
        # wrk stops with up to one request in flight per connection: stored, answer unread
        in_flight = stored - accepted
        print(
            f"accepted {accepted:,}; batches stored {stored:,} ({in_flight} in flight when wrk "
            f"stopped, at most {CONNECTIONS})"
        )
        if total > presigned:
            print(f"wrk sent more than the {presigned:,} distinct requests signed: raise it")
        return 0 if 0 <= in_flight <= CONNECTIONS and rejected == 0 else 1
    finally:
        server.terminate()
        server.wait(15)
        redis_server.stop()
        if os.environ.get("KEEP"):
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(
        main(
            float(sys.argv[1]) if len(sys.argv) > 1 else 15.0,
            int(sys.argv[2]) if len(sys.argv) > 2 else 2,
        )
    )
