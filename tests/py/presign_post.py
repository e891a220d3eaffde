"""Prints a presigned POST made by botocore's generate_presigned_post (the form a browser
or an SDK helper sends to upload a file) as one JSON line: {"url", "fields"}, signed with
the environment's key.

usage: presign_post.py --endpoint URL --bucket B --key K [--expires SECONDS]
                       [--fields JSON] [--conditions JSON] [--widen-key]
--widen-key rewrites the signed policy's key condition to allow any key, keeping the
signature: a tampered policy.
"""

import argparse
import base64
import json

from common import client


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--endpoint", required=True)
    ap.add_argument("--bucket", required=True)
    ap.add_argument("--key", required=True)
    ap.add_argument("--expires", type=int, default=600)
    ap.add_argument("--fields", default=None)
    ap.add_argument("--conditions", default=None)
    ap.add_argument("--widen-key", action="store_true")
    args = ap.parse_args()
    s3 = client(args.endpoint)
    post = s3.generate_presigned_post(
        Bucket=args.bucket,
        Key=args.key,
        Fields=json.loads(args.fields) if args.fields else None,
        Conditions=json.loads(args.conditions) if args.conditions else None,
        ExpiresIn=args.expires,
    )
    if args.widen_key:
        policy = json.loads(base64.b64decode(post["fields"]["policy"]))
        policy["conditions"] = [
            ["starts-with", "$key", ""]
            if (isinstance(c, dict) and "key" in c) or (isinstance(c, list) and c[1] == "$key")
            else c
            for c in policy["conditions"]
        ]
        post["fields"]["policy"] = base64.b64encode(json.dumps(policy).encode()).decode()
    print(json.dumps(post))


if __name__ == "__main__":
    main()
