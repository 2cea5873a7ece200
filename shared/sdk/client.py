"""The synchronous HTTP client for the thecloud API."""

from __future__ import annotations

import email.utils
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import httpx

from shared.sdk.audit import AuditAPI, EventsAPI
from shared.sdk.cluster import ClusterAPI
from shared.sdk.compute import HostsAPI, InstancesAPI, InstanceTypesAPI, ServerGroupsAPI
from shared.sdk.errors import CloudError, error_from_body
from shared.sdk.identity import AuthAPI, KeysAPI, QuotaAPI, RolesAPI, TenantsAPI, UsersAPI
from shared.sdk.images import ImagesAPI
from shared.sdk.networks import ElasticIpsAPI, PeeringsAPI, PortsAPI, SecurityGroupsAPI, SubnetsAPI, VpcsAPI
from shared.sdk.secrets import SecretsAPI
from shared.sdk.storage import S3API, BackupsAPI, BucketsAPI, SnapshotsAPI, VolumesAPI
from shared.sdk.tls import ssl_context

DEFAULT_URL = "http://127.0.0.1:8600"
USER_AGENT = "thecloud-sdk/0.1"
MAX_RETRY_AFTER = 2.0
DEFAULT_RETRY_AFTER = 0.5

Params = Mapping[str, str]
# A raw request body: bytes, or a function returning an iterable of bytes (called again for each retry)
Content = bytes | Callable[[], Iterable[bytes]]


def parse_retry_after(value: str | None) -> float:
    """Seconds to wait from a Retry-After header (seconds or HTTP date), capped at 2 s."""
    if not value:
        return DEFAULT_RETRY_AFTER
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return DEFAULT_RETRY_AFTER
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - datetime.now(UTC)).total_seconds()
    return min(max(seconds, 0.0), MAX_RETRY_AFTER)


class CloudClient:
    """A client for one thecloud controller (or a load balancer in front of several).

    Resource groups are attributes: ``auth``, ``tenants``, ``quota``, ``users``, ``roles``, ``keys``,
    ``secrets``, ``audit``, ``events``, ``cluster``, ``hosts``, ``instances``, ``server_groups``,
    ``instance_types``, ``images``, ``volumes``, ``snapshots``, ``s3`` (``s3.credentials``) and ``buckets``.
    """

    def __init__(
        self,
        url: str = DEFAULT_URL,
        api_key: str | None = None,
        token: str | None = None,
        timeout: float = 10.0,
        verify: bool | str = True,
        retries_on_503: int = 3,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.url = url.rstrip("/")
        self.api_key = api_key
        self.token = token
        self.timeout = timeout
        self.verify = verify  # also for WebSocket sessions (shared.sdk.sessions)
        self.retries_on_503 = max(0, retries_on_503)
        self._sleep = sleep
        self._http = httpx.Client(
            base_url=self.url,
            timeout=timeout,
            verify=ssl_context(verify) if isinstance(verify, str) else verify,
            transport=transport,
            headers={"User-Agent": USER_AGENT, "Accept": "application/json"},
        )
        self.auth = AuthAPI(self)
        self.tenants = TenantsAPI(self)
        self.quota = QuotaAPI(self)
        self.users = UsersAPI(self)
        self.roles = RolesAPI(self)
        self.keys = KeysAPI(self)
        self.secrets = SecretsAPI(self)
        self.audit = AuditAPI(self)
        self.events = EventsAPI(self)
        self.cluster = ClusterAPI(self)
        self.hosts = HostsAPI(self)
        self.instances = InstancesAPI(self)
        self.server_groups = ServerGroupsAPI(self)
        self.instance_types = InstanceTypesAPI(self)
        self.images = ImagesAPI(self)
        self.vpcs = VpcsAPI(self)
        self.subnets = SubnetsAPI(self)
        self.ports = PortsAPI(self)
        self.security_groups = SecurityGroupsAPI(self)
        self.elastic_ips = ElasticIpsAPI(self)
        self.peerings = PeeringsAPI(self)
        self.volumes = VolumesAPI(self)
        self.snapshots = SnapshotsAPI(self)
        self.backups = BackupsAPI(self)
        self.s3 = S3API(self)
        self.buckets = BucketsAPI(self)

    @classmethod
    def from_config(cls, profile: str | None = None, **kwargs: Any) -> CloudClient:
        """Build a client from the config file and THECLOUD_* environment variables."""
        from shared.sdk.config import resolve

        settings = resolve(profile=profile)
        return cls(settings.url, api_key=settings.api_key, token=settings.token, **kwargs)

    @property
    def credential(self) -> str | None:
        """The bearer credential sent with requests: the API key if set, else the token."""
        return self.api_key or self.token

    def close(self) -> None:
        """Close the underlying connection pool."""
        self._http.close()

    def __enter__(self) -> CloudClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def request(
        self,
        method: str,
        path: str,
        *,
        params: Params | None = None,
        json: Any = None,
        idempotency_key: str | None = None,
        auth: bool = True,
        content: Content | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: httpx.Timeout | None = None,
    ) -> Any:
        """Send a request and return the decoded JSON body (None for an empty body).

        ``auth=False`` leaves the Authorization header out (used by login). ``content`` is a raw body
        instead of ``json`` (a function returning chunks streams it, and is called again for a retry).
        """
        response = self._send(
            method, path, params=params, json=json, idempotency_key=idempotency_key, auth=auth,
            content=content, headers=headers, timeout=timeout,
        )
        try:
            body = response.read()
        except httpx.TransportError as exc:
            raise self._connection_error(exc) from exc
        finally:
            response.close()
        if not body.strip():
            return None
        try:
            return response.json()
        except ValueError as exc:
            raise CloudError(
                response.status_code,
                "bad_response",
                "the server answered with a body that is not JSON",
                response.headers.get("x-request-id"),
            ) from exc

    @contextmanager
    def stream(
        self,
        method: str,
        path: str,
        *,
        params: Params | None = None,
        read_timeout: float | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Iterator[httpx.Response]:
        """Send a request and yield the open, successful response for streaming its body.

        ``read_timeout`` bounds each wait for data (None = wait forever); transport errors while
        reading are raised as CloudError.
        """
        timeout = httpx.Timeout(self.timeout, read=read_timeout)
        response = self._send(method, path, params=params, timeout=timeout, headers=headers)
        try:
            yield response
        except httpx.TransportError as exc:
            raise self._connection_error(exc) from exc
        finally:
            response.close()

    def _headers(self, method: str, idempotency_key: str | None, auth: bool) -> dict[str, str]:
        headers: dict[str, str] = {}
        if auth and self.credential:
            headers["Authorization"] = f"Bearer {self.credential}"
        if method.upper() == "POST":
            headers["Idempotency-Key"] = idempotency_key or uuid.uuid4().hex
        return headers

    def _send(
        self,
        method: str,
        path: str,
        *,
        params: Params | None = None,
        json: Any = None,
        idempotency_key: str | None = None,
        timeout: httpx.Timeout | None = None,
        auth: bool = True,
        headers: Mapping[str, str] | None = None,
        content: Content | None = None,
    ) -> httpx.Response:
        """Send with retries on 503; return a successful, unread response or raise CloudError.

        POST requests always carry an Idempotency-Key (generated when the caller gave none), and the
        same key is reused on every retry, so retrying a POST can never apply it twice.
        """
        all_headers = self._headers(method, idempotency_key, auth)
        all_headers.update(headers or {})
        attempt = 0
        while True:
            request = self._http.build_request(
                method,
                path,
                params=dict(params) if params else None,
                json=json,
                content=content() if callable(content) else content,
                headers=all_headers,
                timeout=timeout if timeout is not None else httpx.USE_CLIENT_DEFAULT,
            )
            try:
                response = self._http.send(request, stream=True)
            except httpx.TransportError as exc:
                raise self._connection_error(exc) from exc
            if response.is_success:
                return response
            error = self._read_error(response)
            if response.status_code == 503 and attempt < self.retries_on_503:
                attempt += 1
                self._sleep(parse_retry_after(response.headers.get("retry-after")))
                continue
            raise error

    def _read_error(self, response: httpx.Response) -> CloudError:
        try:
            body = response.read()
        except httpx.TransportError:
            body = b""
        finally:
            response.close()
        return error_from_body(response.status_code, body, response.headers, response.reason_phrase)

    def _connection_error(self, exc: httpx.TransportError) -> CloudError:
        kind = "timed out talking to" if isinstance(exc, httpx.TimeoutException) else "cannot reach"
        detail = str(exc) or type(exc).__name__
        return CloudError(0, "connection_error", f"{kind} {self.url}: {detail}")
