"""Rally's Signature Version 4 against the worked examples in Amazon S3's documentation
("Authenticating Requests: Using the Authorization Header" and "... Using Query
Parameters"): the same key, request and time give the signature Amazon published."""

from integrations.s3 import signature

SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
HOST = "examplebucket.s3.amazonaws.com"
EMPTY = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
WHEN = "20130524T000000Z"


def test_a_get_signed_in_its_headers_matches_amazons_example():
    headers = {
        "host": HOST,
        "range": "bytes=0-9",
        "x-amz-content-sha256": EMPTY,
        "x-amz-date": WHEN,
    }
    signed = signature(
        SECRET,
        method="GET",
        path="/test.txt",
        query=[],
        headers=headers,
        payload_sha256=EMPTY,
        amz_date=WHEN,
        region="us-east-1",
    )
    assert signed == "f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"


def test_a_presigned_link_matches_amazons_example():
    query = [
        ("X-Amz-Algorithm", "AWS4-HMAC-SHA256"),
        ("X-Amz-Credential", "AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request"),
        ("X-Amz-Date", WHEN),
        ("X-Amz-Expires", "86400"),
        ("X-Amz-SignedHeaders", "host"),
    ]
    signed = signature(
        SECRET,
        method="GET",
        path="/test.txt",
        query=query,
        headers={"host": HOST},
        payload_sha256="UNSIGNED-PAYLOAD",
        amz_date=WHEN,
        region="us-east-1",
    )
    assert signed == "aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404"
