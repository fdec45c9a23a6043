"""A fake EC2 instance metadata service (IMDSv2 only) on 127.0.0.1, for the instance-script tests.

PUT /latest/api/token needs the TTL header and returns a token; every GET needs a live token (else
401, as with HttpTokens=required). meta-data/spot/instance-action answers 404 for the first
`notice_after` polls, then the notice JSON (or 404 forever when `notice` is None).
"""
from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class FakeImds:
    def __init__(self, instance_id="i-0123456789abcdef0", notice=None, notice_after=1, rebalance=None):
        self.instance_id = instance_id
        self.rebalance = rebalance  # body of events/recommendations/rebalance, or None for 404
        self.notice = notice
        self.notice_after = notice_after
        self.tokens: dict[str, float] = {}  # token -> expiry (monotonic)
        self.requests: list[tuple[str, str, int]] = []  # (method, path, status)
        self.action_polls = 0
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep pytest output quiet
                pass

            def _send(self, status, body=""):
                data = body.encode()
                fake.requests.append((self.command, self.path, status))
                self.send_response(status)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_PUT(self):
                ttl = self.headers.get("X-aws-ec2-metadata-token-ttl-seconds")
                if self.path != "/latest/api/token":
                    return self._send(404)
                if not ttl or not ttl.isdigit() or not 1 <= int(ttl) <= 21600:
                    return self._send(400, "missing or bad X-aws-ec2-metadata-token-ttl-seconds")
                token = "tok-%d" % len(fake.tokens)
                fake.tokens[token] = time.monotonic() + int(ttl)
                self._send(200, token)

            def do_GET(self):
                token = self.headers.get("X-aws-ec2-metadata-token")
                if token not in fake.tokens or fake.tokens[token] < time.monotonic():
                    return self._send(401)
                if self.path == "/latest/meta-data/instance-id":
                    return self._send(200, fake.instance_id)
                if self.path == "/latest/meta-data/spot/instance-action":
                    fake.action_polls += 1
                    if fake.notice is None or fake.action_polls <= fake.notice_after:
                        return self._send(404)
                    return self._send(200, json.dumps(fake.notice))
                if self.path == "/latest/meta-data/events/recommendations/rebalance" and fake.rebalance:
                    return self._send(200, json.dumps(fake.rebalance))
                self._send(404)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.endpoint = "http://127.0.0.1:%d" % self.server.server_address[1]
        self._thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()
        self._thread.join()
