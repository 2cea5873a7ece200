"""The aws CLI (awscli from PyPI) against storaged over HTTPS: s3 mb/cp/ls/rm/rb and s3api calls."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.s3.harness import REGION, TENANT_A, StoragedProcess

AWS = Path(sys.executable).with_name("aws")


@pytest.fixture
def aws(s3_tls: StoragedProcess, tmp_path: Path) -> Any:
    if not AWS.exists():
        pytest.skip(f"the aws CLI is not installed next to {sys.executable} (pip install awscli)")
    config, creds = tmp_path / "aws-config", tmp_path / "aws-credentials"
    config.write_text(f"[default]\nregion = {REGION}\ns3 =\n  addressing_style = path\n")
    creds.write_text(f"[default]\naws_access_key_id = {TENANT_A.access_key_id}\n"
                     f"aws_secret_access_key = {TENANT_A.secret_access_key}\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update({"AWS_CONFIG_FILE": str(config), "AWS_SHARED_CREDENTIALS_FILE": str(creds),
                "AWS_CA_BUNDLE": str(s3_tls.cert), "AWS_PAGER": ""})

    def run(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        out = subprocess.run([str(AWS), "--endpoint-url", s3_tls.url, *args], env=env, capture_output=True,
                             text=True, timeout=120)
        if check:
            assert out.returncode == 0, f"aws {' '.join(args)}: {out.stderr}"
        return out

    return run


def test_aws_cli_round_trip(aws: Any, tmp_path: Path) -> None:
    bucket = f"tc-cli-{os.urandom(4).hex()}"
    big, small = tmp_path / "big.bin", tmp_path / "small.txt"
    big.write_bytes(os.urandom(9 << 20))  # above the CLI's 8 MiB multipart threshold
    small.write_text("hello from the aws cli\n")
    aws("s3", "mb", f"s3://{bucket}")
    try:
        aws("s3", "cp", str(big), f"s3://{bucket}/data/big.bin")
        aws("s3", "cp", str(small), f"s3://{bucket}/data/small.txt")
        listing = aws("s3", "ls", f"s3://{bucket}/data/").stdout
        assert "big.bin" in listing and "small.txt" in listing and str(9 << 20) in listing
        assert aws("s3", "ls").stdout.count(bucket) == 1
        back = tmp_path / "back.bin"
        aws("s3", "cp", f"s3://{bucket}/data/big.bin", str(back))
        assert hashlib.sha256(back.read_bytes()).digest() == hashlib.sha256(big.read_bytes()).digest()
        assert aws("s3", "cp", f"s3://{bucket}/data/small.txt", "-").stdout == "hello from the aws cli\n"

        head = json.loads(aws("s3api", "head-object", "--bucket", bucket, "--key", "data/big.bin").stdout)
        assert head["ContentLength"] == 9 << 20 and head["ETag"].endswith('-2"')
        aws("s3api", "put-object", "--bucket", bucket, "--key", "api/obj", "--body", str(small),
            "--metadata", "source=cli")
        head = json.loads(aws("s3api", "head-object", "--bucket", bucket, "--key", "api/obj").stdout)
        assert head["Metadata"] == {"source": "cli"}
        listed = json.loads(aws("s3api", "list-objects-v2", "--bucket", bucket, "--delimiter", "/").stdout)
        assert [p["Prefix"] for p in listed["CommonPrefixes"]] == ["api/", "data/"]
        missing = aws("s3api", "get-object", "--bucket", bucket, "--key", "nope", str(tmp_path / "x"), check=False)
        assert missing.returncode != 0 and "NoSuchKey" in missing.stderr
        refused = aws("s3", "rb", f"s3://{bucket}", check=False)
        assert refused.returncode != 0 and "BucketNotEmpty" in refused.stderr
        aws("s3", "rm", f"s3://{bucket}", "--recursive")
        assert aws("s3", "ls", f"s3://{bucket}").stdout.strip() == ""
    finally:
        aws("s3", "rb", f"s3://{bucket}", "--force", check=False)
    assert bucket not in aws("s3", "ls").stdout
