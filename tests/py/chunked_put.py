"""One aws-chunked PUT (common.aws_chunked_put) from the command line, for tests that
need a streaming-signed upload with a chosen chunk size or a body changed after signing.

    chunked_put.py ENDPOINT BUCKET KEY SIZE CHUNK_SIZE MODE [--te] [--tamper-at N]

Prints one JSON line: status, the response body, and the SHA-256 of the data sent."""

import argparse
import json

from common import aws_chunked_put, pattern, sha256


def main():
    ap = argparse.ArgumentParser()
    for name in ["endpoint", "bucket", "key"]:
        ap.add_argument(name)
    ap.add_argument("size", type=int)
    ap.add_argument("chunk_size", type=int)
    ap.add_argument("mode", choices=["signed", "trailer"])
    ap.add_argument("--te", action="store_true")
    ap.add_argument("--tamper-at", type=int)
    a = ap.parse_args()
    data = pattern(11, a.size)
    status, body = aws_chunked_put(
        a.endpoint, a.bucket, a.key, data, a.chunk_size, a.mode, transfer_chunked=a.te, tamper_at=a.tamper_at
    )
    print(json.dumps({"status": status, "body": body.decode("utf-8", "replace"), "sha256": sha256(data)}))


if __name__ == "__main__":
    main()
