"""A flood tenant: many keep-alive connections sending GETs of one presigned URL at a fixed
total rate, cheaply (one process, asyncio), so that on a small test machine the flood's
own CPU does not decide what the other tenant gets.

usage: flood.py --endpoint URL --bucket B --key K --access-key A --secret-key S
                --connections N --rate R --seconds T

boto3 presigns the GET (SigV4 query auth, X-Amz-Credential names the flood's access key,
which is how weir classifies it); the requests are sent as a presigned URL is by any
HTTP client. Request i starts at t0 + i / R on whichever connection is free.

No request starts after T seconds (a request still waiting then finishes). Prints one
JSON line: {"requests", "by_status": {"200": n, "503": n, ...},
"slow_down_with_retry_after", "slow_down_body" (one 503 body), "errors" (connection
failures), "seconds" (first start to last answer), "ok_per_second" (200 answers by the
whole second after the first start in which they completed)}.
"""

import argparse
import asyncio
import json
import time
import urllib.parse

import boto3
import botocore.config

from common import REGION


def presign(args):
    s3 = boto3.client(
        "s3",
        endpoint_url=args.endpoint,
        region_name=REGION,
        aws_access_key_id=args.access_key,
        aws_secret_access_key=args.secret_key,
        config=botocore.config.Config(signature_version="s3v4", s3={"addressing_style": "path"}),
    )
    return s3.generate_presigned_url(
        "get_object", Params={"Bucket": args.bucket, "Key": args.key}, ExpiresIn=3600
    )


async def read_response(reader):
    """Status, headers (lower-case names) and body of one response with Content-Length."""
    line = await reader.readline()
    if not line:
        raise ConnectionError("closed")
    status = int(line.split()[1])
    headers = {}
    while True:
        h = await reader.readline()
        if h in (b"\r\n", b"\n", b""):
            break
        name, _, value = h.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()
    body = await reader.readexactly(int(headers.get("content-length", "0")))
    return status, headers, body


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--endpoint", required=True)
    ap.add_argument("--bucket", required=True)
    ap.add_argument("--key", required=True)
    ap.add_argument("--access-key", required=True)
    ap.add_argument("--secret-key", required=True)
    ap.add_argument("--connections", type=int, default=200)
    ap.add_argument("--rate", type=float, default=600)
    ap.add_argument("--seconds", type=float, default=10)
    args = ap.parse_args()
    url = urllib.parse.urlsplit(presign(args))
    host, port = url.hostname, url.port or 80
    request = ("GET %s?%s HTTP/1.1\r\nHost: %s\r\nUser-Agent: weir-flood\r\n\r\n" % (
        url.path, url.query, url.netloc)).encode()
    total = int(args.rate * args.seconds)
    out = {"requests": 0, "by_status": {}, "slow_down_with_retry_after": 0,
           "slow_down_body": None, "errors": 0}
    ok_per_second = {}
    next_index = 0
    t0 = time.monotonic() + 0.5

    async def worker():
        nonlocal next_index
        conn = None
        while True:
            i = next_index
            if i >= total or time.monotonic() >= t0 + args.seconds:
                break
            next_index += 1
            delay = t0 + i / args.rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            try:
                if conn is None:
                    conn = await asyncio.open_connection(host, port)
                reader, writer = conn
                writer.write(request)
                await writer.drain()
                status, headers, body = await read_response(reader)
            except (OSError, ConnectionError, asyncio.IncompleteReadError, ValueError, IndexError):
                out["errors"] += 1
                conn = None
                continue
            out["requests"] += 1
            key = str(status)
            out["by_status"][key] = out["by_status"].get(key, 0) + 1
            if status == 200:
                second = int(time.monotonic() - t0)
                ok_per_second[second] = ok_per_second.get(second, 0) + 1
            if status == 503:
                if headers.get("retry-after", "").isdigit() and int(headers["retry-after"]) >= 1:
                    out["slow_down_with_retry_after"] += 1
                if out["slow_down_body"] is None:
                    out["slow_down_body"] = body.decode("utf-8", "replace")
            if headers.get("connection", "").lower() == "close":
                conn[1].close()
                conn = None
        if conn is not None:
            conn[1].close()

    await asyncio.gather(*(worker() for _ in range(args.connections)))
    out["seconds"] = time.monotonic() - t0
    out["ok_per_second"] = [ok_per_second.get(i, 0) for i in range(int(out["seconds"]) + 1)]
    print(json.dumps(out))


if __name__ == "__main__":
    asyncio.run(main())
