"""Fetch what the client did not prefetch, from the client's ``fhirServer``.

The ``fhirAuthorization`` access token goes only to the client's own FHIR server: a ``next``
link (or a server answer) that points anywhere else is refused rather than followed, so a
hostile or misconfigured Bundle cannot make the service leak the token. Failures are reported
as :class:`FetchError` with a reason that names the HTTP status or the timeout, never the URL
(URLs carry patient ids) and never the token.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import urljoin, urlsplit

import httpx

from careplan_rules.service.prefetch import bundle_resources, next_link, outcome_is_error

FHIR_JSON = "application/fhir+json"
Found = list[tuple[dict[str, Any], str | None]]  # (resource, fullUrl)


class FetchError(Exception):
    """A fetch from the FHIR server failed; ``reason`` is safe to log and to show."""

    def __init__(self, reason: str, *, code: str = "exception") -> None:
        super().__init__(reason)
        self.reason = reason
        self.code = code  # FHIR issue-type: timeout, security, not-found, exception, too-long


@dataclass(frozen=True, slots=True)
class FetchLimits:
    timeout_seconds: float = 4.0
    max_pages: int = 20
    max_response_bytes: int = 20_000_000


def _origin(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    return parts.scheme.lower(), parts.netloc.lower()


class FhirClient:
    """Reads and searches against one FHIR server with one bearer token."""

    def __init__(self, http: httpx.AsyncClient, base_url: str, token: str | None, limits: FetchLimits) -> None:
        self._http = http
        self._base = base_url.rstrip("/") + "/"
        self._token = token
        self._limits = limits

    def _headers(self) -> dict[str, str]:
        headers = {"Accept": FHIR_JSON}
        if self._token:
            headers["Authorization"] = f"Bearer {self._token}"
        return headers

    def _same_server(self, url: str) -> bool:
        return _origin(url) == _origin(self._base) and url.startswith(self._base.rstrip("/"))

    async def _get(self, url: str) -> dict[str, Any] | None:
        """GET one URL; None for 404/410 (a read of a resource that does not exist)."""
        try:
            response = await self._http.get(url, headers=self._headers(), timeout=self._limits.timeout_seconds)
        except httpx.TimeoutException:
            raise FetchError(
                f"the FHIR server did not answer within {self._limits.timeout_seconds:g} s", code="timeout"
            ) from None
        except httpx.HTTPError as exc:
            raise FetchError(f"could not reach the FHIR server ({type(exc).__name__})") from None
        status = response.status_code
        if status in (404, 410):
            return None
        if 300 <= status < 400:
            # redirects are not followed: the bearer token must not travel to another address
            raise FetchError(f"the FHIR server answered with a redirect (HTTP {status}); not followed")
        if status in (401, 403):
            raise FetchError(f"the FHIR server refused the access token (HTTP {status})", code="security")
        if status >= 400:
            raise FetchError(f"the FHIR server answered HTTP {status}")
        if len(response.content) > self._limits.max_response_bytes:
            raise FetchError("the FHIR server's answer is larger than the configured limit", code="too-long")
        try:
            data = json.loads(response.content)
        except (json.JSONDecodeError, UnicodeDecodeError, RecursionError):
            raise FetchError("the FHIR server's answer is not JSON") from None
        if not isinstance(data, dict) or not isinstance(data.get("resourceType"), str):
            raise FetchError("the FHIR server's answer is not a FHIR resource")
        if data["resourceType"] == "OperationOutcome" and outcome_is_error(data):
            raise FetchError("the FHIR server answered with an error OperationOutcome")
        return data

    async def read(self, relative: str) -> Found:
        """A read (``Patient/123``): the resource, or nothing when the server has none."""
        data = await self._get(urljoin(self._base, relative))
        if data is None:
            return []
        if data["resourceType"] == "Bundle":
            return _resources_of(data, "the FHIR server's Bundle")
        return [(data, None)]

    async def search(self, relative: str) -> Found:
        """A search (``MedicationStatement?patient=123``), following ``next`` links."""
        url = urljoin(self._base, relative)
        data = await self._get(url)
        if data is None:
            raise FetchError("the FHIR server answered HTTP 404 to a search", code="not-found")
        return await self._collect(data)

    async def follow(self, next_url: str, pages_done: int = 1) -> Found:
        """The pages after a prefetched first page, starting at its ``next`` link."""
        return await self._page_chain(next_url, pages_done)

    async def _collect(self, first: dict[str, Any]) -> Found:
        if first["resourceType"] != "Bundle":
            return [(first, None)]
        found = _resources_of(first, "the FHIR server's search Bundle")
        more = next_link(first)
        if more is not None:
            found.extend(await self._page_chain(more, 1))
        return found

    async def _page_chain(self, url: str, pages_done: int) -> Found:
        found: Found = []
        seen: set[str] = set()
        next_url: str | None = url
        while next_url is not None:
            absolute = urljoin(self._base, next_url)
            if not self._same_server(absolute):
                raise FetchError(
                    "a Bundle 'next' link points outside the client's fhirServer; not followed", code="security"
                )
            if absolute in seen:
                raise FetchError("the FHIR server's 'next' links loop")
            if pages_done >= self._limits.max_pages:
                raise FetchError(
                    f"the search has more than {self._limits.max_pages} pages (the configured limit)", code="too-long"
                )
            seen.add(absolute)
            page = await self._get(absolute)
            pages_done += 1
            if page is None or page["resourceType"] != "Bundle":
                raise FetchError("a 'next' page of the search is not a Bundle")
            found.extend(_resources_of(page, "a page of the search"))
            next_url = next_link(page)
        return found


def _resources_of(bundle: dict[str, Any], what: str) -> Found:
    """The resources of a fetched Bundle.

    Raises:
        FetchError: an entry is an error OperationOutcome, or is not a FHIR resource.
    """
    content = bundle_resources(bundle)
    if content.failed:
        raise FetchError(f"{what} holds an error OperationOutcome")
    if content.malformed:
        raise FetchError(f"{what} is malformed: {content.malformed[0]}", code="structure")
    return content.resources
