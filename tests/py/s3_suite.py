"""The boto3 S3 operation suite, run against one endpoint (weir, or a node directly).

usage: s3_suite.py --endpoint URL --bucket B --prefix P [--mode full|read] [--manifest FILE]

full: every operation, writing under prefix P (the bucket must exist).
read: read-only operations on seeded objects (--manifest, as for seed.py), for pools whose
      nodes hold copies of the same data but share no writes.
keepalive: only the keep-alive run (60 sequential requests on one client connection) over
      the seeded objects, so the caller can count upstream connections for exactly those.

Every body is SHA-256-checked. Prints one JSON line of checks (see common.py).
"""

import argparse
import concurrent.futures
import io
import json

import requests

from common import LogCounter, Report, aws_chunked_put, ca_bundle, client, md5, pattern, sha256

MIB = 1 << 20


def status_of(exc):
    return exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")


def get_body(s3, bucket, key, **kw):
    r = s3.get_object(Bucket=bucket, Key=key, **kw)
    return r, r["Body"].read()


def put_get(rep, s3, b, p):
    data = pattern(1, MIB + 123)
    put = s3.put_object(Bucket=b, Key=p + "basic", Body=data)
    rep.check("put_etag_md5", md5(data), put["ETag"].strip('"'))
    r, body = get_body(s3, b, p + "basic")
    rep.check("get_sha", sha256(data), sha256(body))
    rep.check("get_content_length", len(data), r["ContentLength"])
    head = s3.head_object(Bucket=b, Key=p + "basic")
    rep.check("head_content_length", len(data), head["ContentLength"])
    rep.check("head_etag", put["ETag"], head["ETag"])
    # Ranged GETs: a middle slice, a suffix, an open-ended tail.
    for name, rng, lo, hi in [
        ("range_mid", "bytes=100-1099", 100, 1100),
        ("range_suffix", "bytes=-777", len(data) - 777, len(data)),
        ("range_open", "bytes=%d-" % (len(data) - 5000), len(data) - 5000, len(data)),
    ]:
        r, body = get_body(s3, b, p + "basic", Range=rng)
        rep.check(name + "_sha", sha256(data[lo:hi]), sha256(body))
        rep.check(name + "_status", 206, r["ResponseMetadata"]["HTTPStatusCode"])
        rep.check(name + "_content_range", "bytes %d-%d/%d" % (lo, hi - 1, len(data)), r.get("ContentRange"))


def missing(rep, s3, b, p):
    try:
        s3.get_object(Bucket=b, Key=p + "does-not-exist")
        rep.check("get_missing_status", 404, 200)
    except s3.exceptions.NoSuchKey as e:
        rep.check("get_missing_status", 404, status_of(e))
        rep.check("get_missing_code", "NoSuchKey", e.response["Error"]["Code"])


def list_delete(rep, s3, b, p):
    keys = [p + "list/k%02d" % i for i in range(5)]
    for i, k in enumerate(keys):
        s3.put_object(Bucket=b, Key=k, Body=pattern(100 + i, 1000 + i))
    got = [o["Key"] for o in s3.list_objects_v2(Bucket=b, Prefix=p + "list/").get("Contents", [])]
    rep.check("list_v2_keys", keys, got)
    paged, token, pages = [], None, 0
    while True:
        kw = {"ContinuationToken": token} if token else {}
        r = s3.list_objects_v2(Bucket=b, Prefix=p + "list/", MaxKeys=2, **kw)
        paged += [o["Key"] for o in r.get("Contents", [])]
        pages += 1
        if not r.get("IsTruncated"):
            break
        token = r["NextContinuationToken"]
    rep.check("list_v2_paged_keys", keys, paged)
    rep.check("list_v2_pages", 3, pages)
    s3.delete_object(Bucket=b, Key=keys[0])
    try:
        s3.head_object(Bucket=b, Key=keys[0])
        rep.check("delete_then_head_status", 404, 200)
    except s3.exceptions.ClientError as e:
        rep.check("delete_then_head_status", 404, status_of(e))
    got = [o["Key"] for o in s3.list_objects_v2(Bucket=b, Prefix=p + "list/").get("Contents", [])]
    rep.check("list_after_delete_keys", keys[1:], got)


def multipart(rep, s3, b, p):
    part_size, parts = 5 * MIB, 6
    data = pattern(2, part_size * (parts - 1) + 3 * MIB)
    key = p + "multipart"
    up = s3.create_multipart_upload(Bucket=b, Key=key)
    uid = up["UploadId"]

    def one(n):
        chunk = data[(n - 1) * part_size : n * part_size]
        r = s3.upload_part(Bucket=b, Key=key, UploadId=uid, PartNumber=n, Body=chunk)
        return {"PartNumber": n, "ETag": r["ETag"]}, md5(chunk), r["ETag"].strip('"')

    # 4 parts in flight at once, so weir spreads them over its nodes.
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        results = list(pool.map(one, range(1, parts + 1)))
    rep.check("multipart_part_etags", [r[1] for r in results], [r[2] for r in results])
    done = s3.complete_multipart_upload(
        Bucket=b, Key=key, UploadId=uid, MultipartUpload={"Parts": [r[0] for r in results]}
    )
    rep.check("multipart_etag_suffix", "-%d" % parts, done["ETag"].strip('"')[-len("-%d" % parts):])
    r, body = get_body(s3, b, key)
    rep.check("multipart_sha", sha256(data), sha256(body))
    rep.check("multipart_length", len(data), len(body))


def copy(rep, s3, b, p):
    data = pattern(3, 3 * MIB + 7)
    s3.put_object(Bucket=b, Key=p + "copy-src", Body=data)
    s3.copy_object(Bucket=b, Key=p + "copy-dst", CopySource={"Bucket": b, "Key": p + "copy-src"})
    _, body = get_body(s3, b, p + "copy-dst")
    rep.check("copy_sha", sha256(data), sha256(body))


def presigned(rep, s3, b, p):
    http = requests.Session()
    http.trust_env = False
    http.verify = ca_bundle()
    data = pattern(4, 2 * MIB + 5)
    url = s3.generate_presigned_url("put_object", Params={"Bucket": b, "Key": p + "presigned"}, ExpiresIn=600)
    r = http.put(url, data=data, timeout=120)
    rep.check("presigned_put_status", 200, r.status_code)
    url = s3.generate_presigned_url("get_object", Params={"Bucket": b, "Key": p + "presigned"}, ExpiresIn=600)
    r = http.get(url, timeout=120)
    rep.check("presigned_get_status", 200, r.status_code)
    rep.check("presigned_get_sha", sha256(data), sha256(r.content))
    # A tampered presigned URL must be refused by the node (weir forwards it untouched).
    r = http.get(url.replace("X-Amz-Expires=600", "X-Amz-Expires=601"), timeout=120)
    rep.check("presigned_tampered_status", 403, r.status_code)


def aws_chunked(rep, s3, b, p, endpoint):
    # Chunks of 64 KiB and a body that is not a multiple of it.
    data = pattern(5, 3 * MIB + 4321)
    for name, mode, te in [
        ("aws_chunked_signed", "signed", False),
        ("aws_chunked_trailer", "trailer", False),
        # The same streams inside Transfer-Encoding: chunked (no Content-Length), as SDKs
        # that stream send them.
        ("aws_chunked_signed_te", "signed", True),
        ("aws_chunked_trailer_te", "trailer", True),
    ]:
        key = p + name
        status, body = aws_chunked_put(endpoint, b, key, data, 64 * 1024, mode, transfer_chunked=te)
        rep.check(name + "_status", 200, status)
        if status != 200:
            rep.info[name + "_response"] = body[:500].decode("utf-8", "replace")
            continue
        _, got = get_body(s3, b, key)
        rep.check(name + "_sha", sha256(data), sha256(got))
        rep.check(name + "_length", len(data), len(got))


def expect_continue(rep, s3, b, p):
    # botocore sends `Expect: 100-continue` on PutObject, waits up to 1 s for the interim
    # 100, and logs whether it saw one: the 100 must come back through weir from the node.
    log = LogCounter("botocore.awsrequest")
    data = pattern(6, 4 * MIB)
    s3.put_object(Bucket=b, Key=p + "expect", Body=data)
    log.logger.removeHandler(log)
    rep.check("expect_100_continue_seen", 1, log.count("100 Continue response seen"))
    rep.check("expect_100_no_timeout", 0, log.count("No response seen from server"))
    _, body = get_body(s3, b, p + "expect")
    rep.check("expect_sha", sha256(data), sha256(body))


def keep_alive(rep, endpoint, b, keys_and_shas, n=60):
    # One client, one pooled connection: every request must reuse it (weir keeps the client
    # connection alive); the Rust side counts weir's upstream connections.
    s3 = client(endpoint, pool=1)
    log = LogCounter("urllib3.connectionpool")
    ok = 0
    for i in range(n):
        key, sha = keys_and_shas[i % len(keys_and_shas)]
        if i % 2:
            s3.head_object(Bucket=b, Key=key)
            ok += 1
        else:
            _, body = get_body(s3, b, key)
            ok += sha256(body) == sha
    log.logger.removeHandler(log)
    rep.check("keepalive_requests_ok", n, ok)
    rep.check("keepalive_client_connections", 1, log.count("Starting new HTTP"))
    rep.info["keepalive_requests"] = n


def concurrent_clients(rep, endpoint, b, p, writes, reads):
    # 8 threads, each with its own client (own connections), all at once.
    def worker(t):
        s3 = client(endpoint, pool=2)
        bad = []
        for i in range(4):
            if writes:
                data = pattern(1000 + t * 10 + i, 256 * 1024 + t * 4099 + i)
                key = "%sconc/t%d-%d" % (p, t, i)
                s3.put_object(Bucket=b, Key=key, Body=data)
                _, body = get_body(s3, b, key)
                if sha256(body) != sha256(data):
                    bad.append(key)
            for key, sha in reads:
                _, body = get_body(s3, b, key)
                if sha256(body) != sha:
                    bad.append(key)
        return bad

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        bad = sum(pool.map(worker, range(8)), [])
    rep.check("concurrent_8_threads_bad_bodies", [], bad)


def read_mode(rep, s3, b, manifest):
    for obj in manifest:
        key = obj["key"]
        _, body = get_body(s3, b, key)
        rep.check("seeded_get_sha " + key, obj["sha256"], sha256(body))
        head = s3.head_object(Bucket=b, Key=key)
        rep.check("seeded_head_length " + key, obj["size"], head["ContentLength"])
    big = max(manifest, key=lambda o: o["size"])
    data = open(big["path"], "rb").read()
    lo, hi = big["size"] // 3, big["size"] // 3 + 65536
    r, body = get_body(s3, b, big["key"], Range="bytes=%d-%d" % (lo, hi - 1))
    rep.check("seeded_range_sha", sha256(data[lo:hi]), sha256(body))
    rep.check("seeded_range_status", 206, r["ResponseMetadata"]["HTTPStatusCode"])
    got = [o["Key"] for o in s3.list_objects_v2(Bucket=b, Prefix="seed/").get("Contents", [])]
    rep.check("seeded_list_v2_keys", sorted(o["key"] for o in manifest), got)
    http = requests.Session()
    http.trust_env = False
    http.verify = ca_bundle()
    url = s3.generate_presigned_url("get_object", Params={"Bucket": b, "Key": big["key"]}, ExpiresIn=600)
    r = http.get(url, timeout=120)
    rep.check("seeded_presigned_get_status", 200, r.status_code)
    rep.check("seeded_presigned_get_sha", big["sha256"], sha256(r.content))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--endpoint", required=True)
    ap.add_argument("--bucket", required=True)
    ap.add_argument("--prefix", default="suite/")
    ap.add_argument("--mode", choices=["full", "read", "keepalive"], default="full")
    ap.add_argument("--manifest")
    args = ap.parse_args()
    b, p, ep = args.bucket, args.prefix, args.endpoint
    s3 = client(ep)
    rep = Report()
    if args.mode == "full":
        rep.run("put_get", lambda: put_get(rep, s3, b, p))
        rep.run("missing", lambda: missing(rep, s3, b, p))
        rep.run("list_delete", lambda: list_delete(rep, s3, b, p))
        rep.run("multipart", lambda: multipart(rep, s3, b, p))
        rep.run("copy", lambda: copy(rep, s3, b, p))
        rep.run("presigned", lambda: presigned(rep, s3, b, p))
        rep.run("aws_chunked", lambda: aws_chunked(rep, s3, b, p, ep))
        rep.run("expect_continue", lambda: expect_continue(rep, s3, b, p))
        small = [(p + "list/k%02d" % i, sha256(pattern(100 + i, 1000 + i))) for i in range(1, 5)]
        rep.run("keep_alive", lambda: keep_alive(rep, ep, b, small))
        rep.run("concurrent", lambda: concurrent_clients(rep, ep, b, p, True, small[:2]))
    elif args.mode == "keepalive":
        manifest = json.load(open(args.manifest))
        reads = [(o["key"], o["sha256"]) for o in manifest]
        rep.run("keep_alive", lambda: keep_alive(rep, ep, b, reads))
    else:
        manifest = json.load(open(args.manifest))
        rep.run("read_mode", lambda: read_mode(rep, s3, b, manifest))
        reads = [(o["key"], o["sha256"]) for o in manifest]
        rep.run("keep_alive", lambda: keep_alive(rep, ep, b, reads))
        rep.run("concurrent", lambda: concurrent_clients(rep, ep, b, p, False, reads[:3]))
    rep.emit()


if __name__ == "__main__":
    main()
