"""Contract fake of MinIO's S3 API for the e2e suite (see base.py for what a contract fake is).

Follows the Amazon S3 API reference (https://docs.aws.amazon.com/AmazonS3/latest/API/) as
MinIO implements it, for what the toolkit's S3 round trip calls: CreateBucket, HeadBucket,
ListObjectsV2, PutObject, GetObject, DeleteObject, DeleteBucket, and MinIO's
``/minio/health/live``. Every S3 request must carry an AWS Signature Version 4
(https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_sigv-create-signed-request.html)
made with the root credentials of ``MINIO_ROOT_USER_FILE`` / ``MINIO_ROOT_PASSWORD_FILE``:
the signature is recomputed and compared, so wrong keys fail as they do on MinIO
(SignatureDoesNotMatch / InvalidAccessKeyId). Objects are kept in memory.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import threading
from urllib.parse import parse_qsl, quote

from base import Response, equal, secret_file

BUCKETS: dict[str, dict[str, bytes]] = {}
LOCK = threading.Lock()


def _error(status: int, code: str, message: str) -> Response:
    body = f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code><Message>{message}</Message></Error>'
    return Response(status, body, "application/xml")


def _hmac(key: bytes, text: str) -> bytes:
    return hmac.new(key, text.encode(), hashlib.sha256).digest()


def signature_problem(req) -> Response | None:
    """Recompute the request's SigV4 signature with the root secret key; None when it matches."""
    auth = req.headers.get("Authorization", "")
    m = re.fullmatch(r"AWS4-HMAC-SHA256 Credential=([^/]+)/(\d{8})/([^/]+)/s3/aws4_request, "
                     r"SignedHeaders=([^,]+), Signature=([0-9a-f]{64})", auth)
    if not m:
        return _error(403, "AccessDenied", "Access Denied. (no AWS Signature Version 4)")
    access, day, region, signed, signature = m.groups()
    if not equal(access, secret_file(os.environ["MINIO_ROOT_USER_FILE"])):
        return _error(403, "InvalidAccessKeyId", "The Access Key Id you provided does not exist in our records.")
    names = signed.split(";")
    canonical_query = "&".join(sorted(f"{quote(k, safe='-_.~')}={quote(v, safe='-_.~')}"
                                      for k, v in parse_qsl(req.raw_query, keep_blank_values=True)))
    canonical = "\n".join([
        req.method, quote(req.path, safe="/-_.~"), canonical_query,
        "".join(f"{n}:{' '.join(str(req.headers.get(n, '')).split())}\n" for n in names), signed,
        req.headers.get("x-amz-content-sha256", "UNSIGNED-PAYLOAD")])
    stamp = req.headers.get("x-amz-date", "")
    scope = f"{day}/{region}/s3/aws4_request"
    to_sign = "\n".join(["AWS4-HMAC-SHA256", stamp, scope, hashlib.sha256(canonical.encode()).hexdigest()])
    key = ("AWS4" + secret_file(os.environ["MINIO_ROOT_PASSWORD_FILE"])).encode()
    for part in (day, region, "s3", "aws4_request"):
        key = _hmac(key, part)
    if not hmac.compare_digest(hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest(), signature):
        return _error(403, "SignatureDoesNotMatch", "The request signature we calculated does not match the "
                      "signature you provided. Check your key and signing method.")
    return None


def handle(req):
    if req.path in ("/minio/health/live", "/minio/health/ready"):
        return Response(200)
    problem = signature_problem(req)
    if problem:
        return problem
    bucket, _, key = req.path.lstrip("/").partition("/")
    if not bucket:
        return _error(400, "InvalidRequest", "no bucket")
    with LOCK:
        if not key:
            if req.method == "PUT":
                if bucket in BUCKETS:
                    return _error(409, "BucketAlreadyOwnedByYou", "Your previous request to create the named "
                                  "bucket succeeded and you already own it.")
                BUCKETS[bucket] = {}
                return Response(200, headers={"Location": f"/{bucket}"})
            if bucket not in BUCKETS:
                return _error(404, "NoSuchBucket", "The specified bucket does not exist")
            if req.method == "HEAD":
                return Response(200)
            if req.method == "DELETE":
                if BUCKETS[bucket]:
                    return _error(409, "BucketNotEmpty", "The bucket you tried to delete is not empty")
                del BUCKETS[bucket]
                return Response(204)
            if req.method == "GET":
                prefix = req.query.get("prefix", "")
                keys = sorted(k for k in BUCKETS[bucket] if k.startswith(prefix))
                items = "".join(f"<Contents><Key>{k}</Key><Size>{len(BUCKETS[bucket][k])}</Size>"
                                f"<ETag>\"{hashlib.md5(BUCKETS[bucket][k]).hexdigest()}\"</ETag>"  # noqa: S324
                                "<LastModified>2026-01-01T00:00:00.000Z</LastModified>"
                                "<StorageClass>STANDARD</StorageClass></Contents>" for k in keys)
                body = ('<?xml version="1.0" encoding="UTF-8"?>\n<ListBucketResult '
                        'xmlns="http://s3.amazonaws.com/doc/2006-03-01/">'
                        f"<Name>{bucket}</Name><Prefix>{prefix}</Prefix><KeyCount>{len(keys)}</KeyCount>"
                        f"<MaxKeys>1000</MaxKeys><IsTruncated>false</IsTruncated>{items}</ListBucketResult>")
                return Response(200, body, "application/xml")
            return None
        if bucket not in BUCKETS:
            return _error(404, "NoSuchBucket", "The specified bucket does not exist")
        objects = BUCKETS[bucket]
        if req.method == "PUT":
            objects[key] = req.body
            return Response(200, headers={"ETag": f'"{hashlib.md5(req.body).hexdigest()}"'})  # noqa: S324
        if key not in objects:
            return _error(404, "NoSuchKey", "The specified key does not exist.")
        if req.method in ("GET", "HEAD"):
            return Response(200, objects[key], "application/octet-stream",
                            headers={"ETag": f'"{hashlib.md5(objects[key]).hexdigest()}"'})  # noqa: S324
        if req.method == "DELETE":
            del objects[key]
            return Response(204)
    return None
