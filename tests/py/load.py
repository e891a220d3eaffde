"""Concurrent boto3 GETs (and optionally PUTs) until told to stop, every body SHA-256 checked.

usage: load.py --endpoint URL --bucket B --manifest FILE --threads N --stop-file PATH
               [--put-threads N --put-size BYTES --put-prefix P] [--max-seconds S]

GET threads loop over the manifest's objects ([{"key", "sha256", ...}]) and compare each
body's SHA-256 and length. PUT threads upload fresh bodies of --put-size bytes under
--put-prefix and read each one back, comparing the SHA-256. Everything runs until the file
--stop-file exists (the Rust test creates it), or --max-seconds pass.

Clients never retry (botocore max_attempts 1): a failure weir did not hide is an error here.
Checks: get_errors, get_bad_bodies, put_errors, put_bad_bodies (all expected 0), and
get_requests_nonzero. Info: request counts, bytes, the first error messages with their
wall-clock times.
"""

import argparse
import hashlib
import json
import os
import threading
import time

from common import Report, client, pattern, sha256


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--endpoint", required=True)
    ap.add_argument("--bucket", required=True)
    ap.add_argument("--manifest", required=True)
    ap.add_argument("--threads", type=int, default=4)
    ap.add_argument("--put-threads", type=int, default=0)
    ap.add_argument("--put-size", type=int, default=1 << 20)
    ap.add_argument("--put-prefix", default="load-put/")
    ap.add_argument("--stop-file", required=True)
    ap.add_argument("--max-seconds", type=float, default=600)
    args = ap.parse_args()
    objects = json.load(open(args.manifest))
    s3 = client(args.endpoint, pool=args.threads + args.put_threads + 2)
    report = Report()
    lock = threading.Lock()
    stats = {
        "get_requests": 0,
        "get_errors": 0,
        "get_bad_bodies": 0,
        "get_bytes": 0,
        "put_requests": 0,
        "put_errors": 0,
        "put_bad_bodies": 0,
        "put_bytes": 0,
    }
    errors = []
    deadline = time.time() + args.max_seconds

    def running():
        return not os.path.exists(args.stop_file) and time.time() < deadline

    def failed(kind, what, exc):
        with lock:
            stats[kind] += 1
            if len(errors) < 20:
                errors.append({"ts": time.time(), "what": what, "error": "%s: %s" % (type(exc).__name__, exc)})

    def getter(n):
        i = n
        while running():
            obj = objects[i % len(objects)]
            i += 1
            try:
                body = s3.get_object(Bucket=args.bucket, Key=obj["key"])["Body"]
                h = hashlib.sha256()
                size = 0
                for chunk in body.iter_chunks(1 << 20):
                    h.update(chunk)
                    size += len(chunk)
                good = h.hexdigest() == obj["sha256"] and size == obj["size"]
                with lock:
                    stats["get_requests"] += 1
                    stats["get_bytes"] += size
                    if not good:
                        stats["get_bad_bodies"] += 1
                        if len(errors) < 20:
                            errors.append({"ts": time.time(), "what": "GET " + obj["key"], "error": "bad body (%d bytes)" % size})
            except Exception as e:  # noqa: BLE001 - every failure is counted
                with lock:
                    stats["get_requests"] += 1
                failed("get_errors", "GET " + obj["key"], e)

    def putter(n):
        i = 0
        while running():
            key = "%s%d-%d" % (args.put_prefix, n, i)
            data = pattern(n * 100003 + i, args.put_size)
            i += 1
            try:
                s3.put_object(Bucket=args.bucket, Key=key, Body=data)
                got = s3.get_object(Bucket=args.bucket, Key=key)["Body"].read()
                with lock:
                    stats["put_requests"] += 1
                    stats["put_bytes"] += len(data)
                    if sha256(got) != sha256(data):
                        stats["put_bad_bodies"] += 1
            except Exception as e:  # noqa: BLE001 - every failure is counted
                with lock:
                    stats["put_requests"] += 1
                failed("put_errors", "PUT " + key, e)

    threads = [threading.Thread(target=getter, args=(n,)) for n in range(args.threads)]
    threads += [threading.Thread(target=putter, args=(n,)) for n in range(args.put_threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for name in ("get_errors", "get_bad_bodies", "put_errors", "put_bad_bodies"):
        report.check(name, 0, stats[name])
    report.check("get_requests_nonzero", True, stats["get_requests"] > 0 or args.threads == 0)
    report.info.update(stats)
    report.info["errors"] = errors
    report.emit()


if __name__ == "__main__":
    main()
