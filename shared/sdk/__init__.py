"""Python SDK for the thecloud API.

>>> from shared.sdk import CloudClient
>>> client = CloudClient("http://127.0.0.1:8600", api_key="tck_...")
>>> names = [secret["name"] for secret in client.secrets.iter_all()]
"""

from shared.sdk.client import DEFAULT_URL, CloudClient
from shared.sdk.config import ConfigError, Settings
from shared.sdk.errors import CloudError

__all__ = ["DEFAULT_URL", "CloudClient", "CloudError", "ConfigError", "Settings"]
