"""Marker/limit pagination and public views (controller.services.views)."""

from __future__ import annotations

from typing import Any

import pytest

from controller.services import views

RECORDS = {k: {"id": k, "n": i} for i, k in enumerate(["e", "a", "d", "b", "c", "f", "g"])}  # unsorted on purpose
ORDER = sorted(RECORDS)


def ids(items: list[dict[str, Any]]) -> list[str]:
    return [r["id"] for r in items]


def walk(records: dict[str, dict[str, Any]], limit: int | None, keep: Any = None) -> list[list[str]]:
    pages, marker = [], None
    for _ in range(100):
        items, marker = views.page(records, limit, marker, keep)
        pages.append(ids(items))
        if marker is None:
            return pages
    raise AssertionError("pagination does not terminate")


def test_first_page_is_ordered_by_key_and_marks_its_last_key() -> None:
    items, nxt = views.page(RECORDS, 3, None)
    assert ids(items) == ["a", "b", "c"]
    assert nxt == "c"


def test_marker_starts_after_the_marker() -> None:
    items, nxt = views.page(RECORDS, 3, "c")
    assert ids(items) == ["d", "e", "f"]
    assert nxt == "f"


def test_last_page_has_no_next_marker() -> None:
    items, nxt = views.page(RECORDS, 3, "f")
    assert ids(items) == ["g"]
    assert nxt is None


def test_exactly_full_last_page_has_no_next_marker() -> None:
    items, nxt = views.page(RECORDS, 7, None)
    assert ids(items) == ORDER
    assert nxt is None
    items, nxt = views.page(RECORDS, 2, "e")
    assert ids(items) == ["f", "g"]
    assert nxt is None


@pytest.mark.parametrize("limit", [1, 2, 3, 6, 7, 8, 1000])
def test_walking_all_pages_yields_every_record_once(limit: int) -> None:
    pages = walk(RECORDS, limit)
    assert [k for page in pages for k in page] == ORDER
    assert all(len(p) == limit for p in pages[:-1])
    assert 0 < len(pages[-1]) <= limit  # never an empty trailing page


def test_marker_not_in_records_still_works() -> None:
    items, _ = views.page(RECORDS, 2, "bb")
    assert ids(items) == ["c", "d"]
    items, nxt = views.page(RECORDS, 2, "zzz")
    assert items == []
    assert nxt is None
    items, _ = views.page(RECORDS, 2, "")
    assert ids(items) == ["a", "b"]


def test_empty_records() -> None:
    assert views.page({}, 10, None) == ([], None)
    assert views.page({}, 10, "a") == ([], None)


def test_filter_is_applied_before_the_limit() -> None:
    even = {k: v for k, v in RECORDS.items() if v["n"] % 2 == 0}

    def keep(record: dict[str, Any]) -> bool:
        return bool(record["n"] % 2 == 0)

    items, nxt = views.page(RECORDS, 2, None, keep=keep)
    assert ids(items) == sorted(even)[:2]
    assert nxt == sorted(even)[1]
    pages = walk(RECORDS, 2, keep)
    assert [k for page in pages for k in page] == sorted(even)
    assert all(len(p) == 2 for p in pages[:-1])


def test_no_next_marker_when_only_filtered_out_records_remain() -> None:
    items, nxt = views.page(RECORDS, 2, None, keep=lambda r: r["id"] in ("a", "b"))
    assert ids(items) == ["a", "b"]
    assert nxt is None


def test_filter_that_keeps_nothing() -> None:
    assert views.page(RECORDS, 2, None, keep=lambda r: False) == ([], None)


def test_limit_defaults_and_clamps() -> None:
    many = {f"k{i:05d}": {"id": f"k{i:05d}"} for i in range(views.MAX_LIMIT + 50)}
    items, nxt = views.page(many, None, None)
    assert len(items) == views.DEFAULT_LIMIT
    assert nxt == f"k{views.DEFAULT_LIMIT - 1:05d}"
    items, _ = views.page(many, views.MAX_LIMIT + 10, None)
    assert len(items) == views.MAX_LIMIT
    items, _ = views.page(many, -5, None)
    assert len(items) == 1


def test_page_returns_the_records_themselves() -> None:
    items, _ = views.page(RECORDS, 1, None)
    assert items[0] is RECORDS["a"]


# -- public views never leak internals ----------------------------------------------------------------

def test_iso_times() -> None:
    assert views.iso(None) is None
    assert views.iso(0) == "1970-01-01T00:00:00Z"
    assert views.iso(1_700_000_000.5) == "2023-11-14T22:13:20.500000Z"


def test_user_and_key_views_hide_hashes() -> None:
    user = {"id": "u1", "name": "alice", "tenant_id": "t1", "role": "admin", "disabled": False,
            "password_hash": "$argon2id$secret", "created_at": 0.0}
    assert "password_hash" not in views.user(user)
    key = {"id": "k1", "name": "ci", "user_id": "u1", "tenant_id": "t1", "secret_hash": "abc", "created_at": 0.0,
           "expires_at": None, "revoked": False}
    shown = views.api_key(key)
    assert "secret_hash" not in shown
    assert shown["expires_at"] is None
    secret = {"name": "db", "tenant_id": "t1", "version": 2, "created_at": 0.0, "updated_at": 1.0,
              "created_by": "alice", "versions": {"1": "ct1", "2": "ct2"}}
    assert "versions" not in views.secret(secret)
    record = {"id": 12, "time": 0.0, "actor": "alice", "actor_id": "u1", "tenant_id": "t1", "action": "x",
              "target": "y", "outcome": "success", "status": 200, "request_id": "r"}
    assert views.audit_record(record)["id"] == "12"
    assert "actor_id" not in views.audit_record(record)
