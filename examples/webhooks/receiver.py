"""A webhook receiver for the workflow service: verifies the Standard Webhooks
signature, refuses deliveries whose timestamp is more than five minutes off
(a captured delivery replayed later), and deduplicates by `webhook-id`
(deliveries are retried until a 2xx).

    pip install standardwebhooks
    python examples/webhooks/receiver.py --secret "$AIRT_WEBHOOK_SECRET" --port 8787
    python examples/webhooks/receiver.py --self-test     # what CI runs

The secret is the workflow service's `--webhook-secret`: used as raw bytes,
or base64-decoded when it has the `whsec_` prefix.
"""

import argparse
import base64
import hashlib
import hmac
import json
import sys
import time
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, HTTPServer

from standardwebhooks.webhooks import Webhook, WebhookVerificationError


def verifier(secret: str) -> Webhook:
    # The library reads a str as base64; a plain secret is given as bytes.
    return Webhook(secret if secret.startswith("whsec_") else secret.encode())


def make_handler(webhook: Webhook, seen: set):
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("content-length", 0)))
            try:
                payload = webhook.verify(body, dict(self.headers))
            except WebhookVerificationError as error:
                self.send_response(400)
                self.end_headers()
                self.wfile.write(f"rejected: {error}".encode())
                return
            delivery = self.headers["webhook-id"]
            if delivery not in seen:
                seen.add(delivery)
                print(f"{payload['event']}: {json.dumps(payload)[:200]}", flush=True)
            self.send_response(204)
            self.end_headers()

    return Handler


def sign(secret: bytes, msg_id: str, timestamp: int, body: bytes) -> str:
    """The workflow service's signature, written out with the standard library."""
    mac = hmac.new(secret, f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256)
    return "v1," + base64.b64encode(mac.digest()).decode()


def self_test() -> None:
    secret = "s3cret-webhook-key"
    webhook = verifier(secret)
    body = b'{"event": "approval.requested"}'
    now = int(time.time())
    fresh = {"webhook-id": "d-1", "webhook-timestamp": str(now),
             "webhook-signature": sign(secret.encode(), "d-1", now, body)}
    assert webhook.verify(body, fresh)["event"] == "approval.requested"
    # The reference library signs exactly as the service does.
    assert webhook.sign("d-1", datetime.fromtimestamp(now, tz=timezone.utc), body.decode()) == fresh["webhook-signature"]
    stale = now - 3600
    replayed = {"webhook-id": "d-1", "webhook-timestamp": str(stale),
                "webhook-signature": sign(secret.encode(), "d-1", stale, body)}
    for name, headers in [("stale", replayed),
                          ("tampered", {**fresh, "webhook-timestamp": str(now + 1)})]:
        try:
            webhook.verify(body, headers)
        except WebhookVerificationError:
            continue
        sys.exit(f"a {name} delivery was accepted")
    print("webhook receiver self-test: fresh accepted, stale and tampered rejected")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--secret")
    parser.add_argument("--port", type=int, default=8787)
    parser.add_argument("--self-test", action="store_true")
    args = parser.parse_args()
    if args.self_test:
        self_test()
    else:
        HTTPServer(("127.0.0.1", args.port), make_handler(verifier(args.secret), set())).serve_forever()
