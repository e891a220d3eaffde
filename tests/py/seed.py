"""Creates a bucket on one endpoint and uploads a manifest of local files into it.

usage: seed.py --endpoint URL --bucket B --manifest FILE
The manifest is [{"key", "path", "size", "sha256"}]. Checks: each object's size and ETag
(MD5 of the file) as the node reports them after the upload.
"""

import argparse
import json

from common import Report, client, md5


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--endpoint", required=True)
    ap.add_argument("--bucket", required=True)
    ap.add_argument("--manifest", required=True)
    args = ap.parse_args()
    objects = json.load(open(args.manifest))
    s3 = client(args.endpoint)
    report = Report()

    def create():
        try:
            s3.create_bucket(Bucket=args.bucket)
        except s3.exceptions.BucketAlreadyOwnedByYou:
            pass

    report.run("create_bucket", create)
    for obj in objects:

        def upload(obj=obj):
            data = open(obj["path"], "rb").read()
            s3.put_object(Bucket=args.bucket, Key=obj["key"], Body=data)
            head = s3.head_object(Bucket=args.bucket, Key=obj["key"])
            report.check("seed_size %s" % obj["key"], obj["size"], head["ContentLength"])
            report.check("seed_etag %s" % obj["key"], md5(data), head["ETag"].strip('"'))

        report.run("seed %s" % obj["key"], upload)
    report.emit()


if __name__ == "__main__":
    main()
