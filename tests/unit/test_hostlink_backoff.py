"""The host link's retry delay: grows per failed round, jittered, capped, and resets after a success."""

from __future__ import annotations

import asyncio
import ssl

from shared import hostlink
from shared.hostlink import ControllerLink, LinkError


def _link() -> ControllerLink:
    return ControllerLink(["127.0.0.1:9"], ssl.create_default_context())


def test_backoff_grows_with_failed_rounds_and_stays_capped() -> None:
    link = _link()
    first = link.backoff()
    assert hostlink.BACKOFF_FIRST / 2 <= first <= hostlink.BACKOFF_FIRST
    link._failed_rounds = 3
    assert hostlink.BACKOFF_FIRST * 4 <= link.backoff() <= hostlink.BACKOFF_FIRST * 8
    link._failed_rounds = 100
    delays = {link.backoff() for _ in range(50)}
    assert all(hostlink.BACKOFF_MAX / 2 <= d <= hostlink.BACKOFF_MAX for d in delays)
    assert len(delays) > 1, "the delay must be jittered, or every host retries at the same instant"


def test_a_failed_round_counts_and_nothing_answering_raises() -> None:
    link = _link()

    async def attempt() -> None:
        try:
            await link.call("GET", "/agent/v1/desired", seconds=1.0)
        finally:
            await link.close()

    try:
        asyncio.run(attempt())
    except LinkError as exc:
        assert "no controller answered" in str(exc)
    else:
        raise AssertionError("a closed port must not answer")
    assert link._failed_rounds == 1
    assert link.backoff() >= hostlink.BACKOFF_FIRST / 2 * 2


def test_judge_reads_answers_the_same_for_every_client() -> None:
    from shared.hostlink import Elsewhere, HostRejected, judge

    assert judge("c1", "GET", "/x", 200, "", {"rev": 3}) == {"rev": 3}
    assert judge("c1", "GET", "/x", 421, "c2:8601", {}) == Elsewhere("c1: not the leader", "c2:8601")
    assert judge("c1", "GET", "/x", 503, "", {"error": {"message": "no quorum"}}).leader == ""
    try:
        judge("c1", "POST", "/x", 403, "", {"error": {"code": "unknown_host", "message": "deleted"}})
    except HostRejected as exc:
        assert "deleted" in str(exc)
    else:
        raise AssertionError("an unknown host must be rejected")
    try:
        judge("c1", "POST", "/x", 400, "", {"error": {"message": "bad body"}})
    except LinkError as exc:
        assert "refused POST /x (400): bad body" in str(exc)
    else:
        raise AssertionError("a 400 is a refusal")
