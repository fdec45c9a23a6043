"""Helpers shared by the instance-side scripts: settings, IMDSv2 and boto3 clients.

Copied to /opt/mlplatform/ by the gpu-training user_data and imported from the scripts beside it.
Stdlib only (boto3 is imported lazily), Python 3.8+ because the Deep Learning AMI's python3 may be
that old.
"""
from __future__ import annotations

import logging
import os
import sys
import time
import urllib.error
import urllib.request

ENV_FILE = "/etc/mlplatform/env"
IMDS_ENDPOINT = "http://169.254.169.254"


def parse_settings(parser, argv):
    """Add the shared flags, parse argv; settings are the env file < environment < flags."""
    parser.add_argument("--env-file", default=ENV_FILE)
    shared = {"--region": "AWS_REGION", "--namespace": "METRIC_NAMESPACE", "--fleet-name": "FLEET_NAME",
              "--instance-id": "INSTANCE_ID", "--imds-endpoint": "IMDS_ENDPOINT", "--endpoint-url": "AWS_ENDPOINT_URL"}
    for flag, key in shared.items():
        parser.add_argument(flag, dest=key)
    args = parser.parse_args(argv)
    return args, load_settings(args.env_file, {k: v for k, v in vars(args).items() if k.isupper()})


def load_settings(env_file, overrides):
    """Merge the env file, then the process environment, then non-None CLI overrides."""
    settings = {}
    try:
        with open(env_file) as f:
            for line in f:
                line = line.strip()
                if line and not line.startswith("#") and "=" in line:
                    key, value = line.split("=", 1)
                    settings[key.strip()] = value.strip().strip("'\"")
    except FileNotFoundError:
        pass
    settings.update(os.environ)
    settings.update({k: v for k, v in overrides.items() if v is not None})
    return settings


def require(settings, *keys):
    missing = [k for k in keys if not settings.get(k)]
    if missing:
        raise SystemExit("missing settings (env file, environment or flags): " + ", ".join(missing))


def setup_logging(name):
    logging.basicConfig(
        level=logging.INFO,
        stream=sys.stderr,  # stdout is for --dry-run output
        format="%(asctime)s %(levelname)s " + name + ": %(message)s",
    )
    logger = logging.getLogger(name)
    logger.setLevel(logging.INFO)  # even where a host process configured logging before us
    return logger


class Imds:
    """IMDSv2 client: a session token from PUT /latest/api/token, renewed a minute before it expires."""

    def __init__(self, endpoint=IMDS_ENDPOINT, ttl_s=21600, timeout_s=2.0):
        self.endpoint = endpoint.rstrip("/")
        self.ttl_s = int(ttl_s)
        self.timeout_s = timeout_s
        self._token = None
        self._expires = 0.0

    def _fetch_token(self):
        req = urllib.request.Request(
            self.endpoint + "/latest/api/token",
            method="PUT",
            headers={"X-aws-ec2-metadata-token-ttl-seconds": str(self.ttl_s)},
        )
        with urllib.request.urlopen(req, timeout=self.timeout_s) as resp:
            self._token = resp.read().decode()
        self._expires = time.monotonic() + self.ttl_s - min(60, self.ttl_s / 2)

    def get(self, path):
        """Return the body of /latest/<path>, or None when IMDS answers 404 (not present)."""
        for attempt in (1, 2):
            if self._token is None or time.monotonic() >= self._expires:
                self._fetch_token()
            req = urllib.request.Request(
                self.endpoint + "/latest/" + path, headers={"X-aws-ec2-metadata-token": self._token}
            )
            try:
                with urllib.request.urlopen(req, timeout=self.timeout_s) as resp:
                    return resp.read().decode()
            except urllib.error.HTTPError as e:
                if e.code == 404:
                    return None
                if e.code == 401 and attempt == 1:  # token expired or revoked: get a new one once
                    self._token = None
                    continue
                raise
        return None


def instance_id(settings, log):
    if settings.get("INSTANCE_ID"):
        return settings["INSTANCE_ID"]
    try:
        return Imds(settings.get("IMDS_ENDPOINT") or IMDS_ENDPOINT).get("meta-data/instance-id") or "unknown"
    except (OSError, urllib.error.URLError) as e:
        log.error("cannot read the instance id from IMDS: %s", e)
        return "unknown"


def client(service, settings):
    import boto3  # lazy: --dry-run and --help work without boto3

    return boto3.client(
        service,
        region_name=settings.get("AWS_REGION") or settings.get("AWS_DEFAULT_REGION"),
        endpoint_url=settings.get("AWS_ENDPOINT_URL") or None,
    )
