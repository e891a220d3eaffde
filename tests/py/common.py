"""Shared helpers of the weir end-to-end client scripts.

Every script prints exactly one JSON line on stdout, last: {"checks": [{"name", "expected",
"got"}, ...], ...}. The Rust test asserts expected == got for every check, so a script never
decides pass/fail itself and a failing check reads as "expected X, got Y". An exception inside
a check becomes a failed check carrying the exception text, and the other checks still run.

Clients never retry (docs/design.md, "How we know it works"): the tests must see weir's
behaviour, not the client's.
"""

import datetime
import hashlib
import hmac
import http.client
import json
import logging
import os
import sys
import threading
import traceback
import urllib.parse

import boto3
import botocore.config

REGION = "us-east-1"


def sha256(data):
    return hashlib.sha256(data).hexdigest()


def md5(data):
    return hashlib.md5(data).hexdigest()


def pattern(seed, size):
    """Deterministic bytes (independent of the Rust generator; only needs to be stable)."""
    out = bytearray()
    block = hashlib.sha256(b"weir-%d" % seed).digest()
    while len(out) < size:
        block = hashlib.sha256(block).digest()
        out += block * 64
    return bytes(out[:size])


def ca_bundle():
    """The CA bundle an https endpoint is verified against (AWS_CA_BUNDLE, which the test
    harness sets only when it serves HTTPS with its own CA), or the system's."""
    return os.environ.get("AWS_CA_BUNDLE") or True


def http_connection(url, timeout):
    """http.client connection for an http or https URL (https verified with ca_bundle())."""
    if url.scheme == "https":
        import ssl
        bundle = ca_bundle()
        ctx = ssl.create_default_context(cafile=None if bundle is True else bundle)
        return http.client.HTTPSConnection(url.hostname, url.port, timeout=timeout, context=ctx)
    return http.client.HTTPConnection(url.hostname, url.port, timeout=timeout)


def client(endpoint, pool=10, **kw):
    cfg = botocore.config.Config(
        signature_version="s3v4",
        s3={"addressing_style": "path"},
        retries={"max_attempts": 1, "mode": "standard"},
        connect_timeout=10,
        read_timeout=120,
        max_pool_connections=pool,
        **kw,
    )
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name=REGION,
        aws_access_key_id=os.environ["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=os.environ["AWS_SECRET_ACCESS_KEY"],
        config=cfg,
    )


class Report:
    """Collects checks; `emit` prints them as the script's last stdout line."""

    def __init__(self):
        self.checks = []
        self.info = {}
        self.lock = threading.Lock()

    def check(self, name, expected, got):
        with self.lock:
            self.checks.append({"name": name, "expected": expected, "got": got})

    def run(self, name, fn):
        """Runs fn(); an exception becomes a failed check `name`."""
        try:
            fn()
        except Exception as e:  # noqa: BLE001 - every failure must become a check
            traceback.print_exc(file=sys.stderr)
            self.check(name, "no exception", "%s: %s" % (type(e).__name__, e))

    def emit(self):
        print(json.dumps({"checks": self.checks, "info": self.info}))


class LogCounter(logging.Handler):
    """Counts log records of a logger whose message contains a marker (urllib3's "Starting
    new HTTP connection", botocore's "100 Continue response seen")."""

    def __init__(self, logger_name):
        super().__init__(logging.DEBUG)
        self.messages = []
        self.logger = logging.getLogger(logger_name)
        self.logger.setLevel(logging.DEBUG)
        self.logger.addHandler(self)

    def emit(self, record):
        self.messages.append(record.getMessage())

    def count(self, marker):
        return sum(1 for m in self.messages if marker in m)

    def reset(self):
        self.messages = []


# --- hand-rolled SigV4 for aws-chunked bodies --------------------------------------------------
# boto3 only sends aws-chunked over https (trailer checksums), so the test builds the two wire
# forms itself: signed chunks (STREAMING-AWS4-HMAC-SHA256-PAYLOAD, SDKs over http) and unsigned
# chunks with a checksum trailer (STREAMING-UNSIGNED-PAYLOAD-TRAILER, current SDKs).


def _hmac(key, msg):
    return hmac.new(key, msg.encode(), hashlib.sha256).digest()


def _signing_key(secret, date):
    k = _hmac(("AWS4" + secret).encode(), date)
    k = _hmac(k, REGION)
    k = _hmac(k, "s3")
    return _hmac(k, "aws4_request")


def aws_chunked_put(endpoint, bucket, key, data, chunk_size, mode, transfer_chunked=False, tamper_at=None):
    """PUTs `data` as an aws-chunked body. mode: "signed" (STREAMING-AWS4-HMAC-SHA256-PAYLOAD)
    or "trailer" (STREAMING-UNSIGNED-PAYLOAD-TRAILER with an x-amz-checksum-crc32 trailer).
    The body goes with a Content-Length, or with Transfer-Encoding: chunked when
    `transfer_chunked`. `tamper_at`: flip one bit of data byte N after signing (a body
    changed in flight). Returns (status, response body)."""
    import zlib
    import base64

    ak, sk = os.environ["AWS_ACCESS_KEY_ID"], os.environ["AWS_SECRET_ACCESS_KEY"]
    url = urllib.parse.urlparse(endpoint)
    host = url.netloc
    path = "/%s/%s" % (bucket, urllib.parse.quote(key))
    now = datetime.datetime.now(datetime.timezone.utc)
    amz_date, date = now.strftime("%Y%m%dT%H%M%SZ"), now.strftime("%Y%m%d")
    scope = "%s/%s/s3/aws4_request" % (date, REGION)
    skey = _signing_key(sk, date)
    chunks = [data[i : i + chunk_size] for i in range(0, len(data), chunk_size)] + [b""]

    if mode == "signed":
        content_sha = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"
        sig_len = len(";chunk-signature=") + 64
        encoded_len = sum(len("%x" % len(c)) + sig_len + 2 + len(c) + 2 for c in chunks)
        trailer_name = None
    elif mode == "trailer":
        content_sha = "STREAMING-UNSIGNED-PAYLOAD-TRAILER"
        trailer_name = "x-amz-checksum-crc32"
        crc = base64.b64encode(zlib.crc32(data).to_bytes(4, "big")).decode()
        trailer = "%s:%s\r\n" % (trailer_name, crc)
        encoded_len = sum(len("%x" % len(c)) + 2 + len(c) + 2 for c in chunks[:-1])
        encoded_len += len("0\r\n") + len(trailer) + 2
    else:
        raise ValueError(mode)

    headers = {
        "content-encoding": "aws-chunked",
        "host": host,
        "x-amz-content-sha256": content_sha,
        "x-amz-date": amz_date,
        "x-amz-decoded-content-length": str(len(data)),
    }
    if not transfer_chunked:
        headers["content-length"] = str(encoded_len)
    if trailer_name:
        headers["x-amz-trailer"] = trailer_name
    signed = sorted(headers)
    canonical = "\n".join(
        ["PUT", path, "", "".join("%s:%s\n" % (h, headers[h]) for h in signed), ";".join(signed), content_sha]
    )
    sts = "\n".join(["AWS4-HMAC-SHA256", amz_date, scope, sha256(canonical.encode())])
    seed_sig = hmac.new(skey, sts.encode(), hashlib.sha256).hexdigest()
    headers["authorization"] = "AWS4-HMAC-SHA256 Credential=%s/%s, SignedHeaders=%s, Signature=%s" % (
        ak,
        scope,
        ";".join(signed),
        seed_sig,
    )

    body = bytearray()
    prev = seed_sig
    empty = sha256(b"")
    offset = 0
    for c in chunks:
        if mode == "signed":
            csts = "\n".join(["AWS4-HMAC-SHA256-PAYLOAD", amz_date, scope, prev, empty, sha256(c)])
            prev = hmac.new(skey, csts.encode(), hashlib.sha256).hexdigest()
            if tamper_at is not None and offset <= tamper_at < offset + len(c):
                i = tamper_at - offset
                c = c[:i] + bytes([c[i] ^ 1]) + c[i + 1 :]
            offset += len(c)
            body += b"%x;chunk-signature=%s\r\n" % (len(c), prev.encode()) + c + b"\r\n"
        elif c:
            body += b"%x\r\n" % len(c) + c + b"\r\n"
        else:
            body += b"0\r\n" + trailer.encode() + b"\r\n"
    if not transfer_chunked:
        assert len(body) == encoded_len, (len(body), encoded_len)

    conn = http_connection(url, 120)
    conn.putrequest("PUT", path, skip_host=True, skip_accept_encoding=True)
    for h, v in headers.items():
        conn.putheader(h, v)
    if transfer_chunked:
        conn.putheader("transfer-encoding", "chunked")
    conn.endheaders()
    try:
        if transfer_chunked:
            # HTTP chunks of 64 KiB wrapping the aws-chunked stream.
            for i in range(0, len(body), 65536):
                part = bytes(body[i : i + 65536])
                conn.send(b"%x\r\n" % len(part) + part + b"\r\n")
            conn.send(b"0\r\n\r\n")
        else:
            conn.send(bytes(body))
    except (BrokenPipeError, ConnectionResetError):
        pass  # answered before the whole body went out (a refused upload): read the answer
    resp = conn.getresponse()
    out = resp.status, resp.read()
    conn.close()
    return out
