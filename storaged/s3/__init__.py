"""The S3-compatible object store served by thecloud-storaged."""
