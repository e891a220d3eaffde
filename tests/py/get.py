"""One boto3 GET, optionally ranged (botocore signs the Range header), read at a bounded rate
and hashed as it streams.

usage: get.py --endpoint URL --bucket B --key K [--range bytes=A-B] [--rate BYTES_PER_SEC]
              --expect-sha256 HEX --expect-length N

Checks: get_status (200, or 206 with --range), get_sha256, get_length. No client retries:
a body cut short is an exception here, not a silent second request.
"""

import argparse
import hashlib
import time

from common import Report, client


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--endpoint", required=True)
    ap.add_argument("--bucket", required=True)
    ap.add_argument("--key", required=True)
    ap.add_argument("--range")
    ap.add_argument("--rate", type=float, default=0)
    ap.add_argument("--expect-sha256", required=True)
    ap.add_argument("--expect-length", type=int, required=True)
    args = ap.parse_args()
    s3 = client(args.endpoint)
    report = Report()

    def get():
        kw = {"Range": args.range} if args.range else {}
        resp = s3.get_object(Bucket=args.bucket, Key=args.key, **kw)
        report.check("get_status", 206 if args.range else 200, resp["ResponseMetadata"]["HTTPStatusCode"])
        h = hashlib.sha256()
        size = 0
        started = time.monotonic()
        for chunk in resp["Body"].iter_chunks(1 << 20):
            h.update(chunk)
            size += len(chunk)
            if args.rate > 0:
                ahead = size / args.rate - (time.monotonic() - started)
                if ahead > 0:
                    time.sleep(ahead)
        report.check("get_sha256", args.expect_sha256, h.hexdigest())
        report.check("get_length", args.expect_length, size)

    report.run("get", get)
    report.emit()


if __name__ == "__main__":
    main()
