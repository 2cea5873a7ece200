"""Property-based fuzzing of every operation in /v1/openapi.json against a real controller process.

The only check is ``not_a_server_error``: whatever schemathesis sends (valid or not), the controller
must answer without a 5xx. Each operation gets its own bounded Hypothesis run with schema-conforming
(positive) and schema-violating (negative) cases. Excluded operations, and why:

- ``GET /v1/events`` streams forever (server-sent events), so a generated call would never return.
- ``POST /v1/cluster/members`` with a syntactically valid address really adds that (unreachable)
  member: a one-node cluster then needs two votes to commit, so every later write would time out
  with 503 -- Raft working as designed, but it would turn the rest of the run into noise. Its input
  validation is covered by tests/api. ``DELETE /v1/cluster/members/{raft_address}`` stays in: a
  generated address is never a member (404/400), and the node's own address is refused with 409.

(schemathesis' own pytest integration, ``schemathesis.pytest.from_fixture``, does not work with
pytest 9.2, so the per-operation runs are driven here with ``APIOperation.as_strategy``.)
"""

from __future__ import annotations

import time

import hypothesis
import pytest
import schemathesis
from schemathesis.checks import not_a_server_error
from schemathesis.generation import GenerationMode

from controller.api.routes import ROUTES
from tests.harness.controllers import ControllerCluster

EXCLUDED = {("GET", "/v1/events"), ("POST", "/v1/cluster/members")}
EXAMPLES = {GenerationMode.POSITIVE: 15, GenerationMode.NEGATIVE: 8}


@pytest.mark.timeout(900)  # a runaway guard, not a speed check: ~120 operations take ~1 min on an idle machine
def test_no_server_errors(one_node: ControllerCluster) -> None:
    node = one_node.nodes[0]
    headers = {"Authorization": f"Bearer {one_node.admin_key()}"}
    schema = schemathesis.openapi.from_url(f"{node.url}/v1/openapi.json", timeout=10)
    operations = [result.ok() for result in schema.get_all_operations()]
    labels = {(op.method.upper(), op.path) for op in operations}
    # every route is an operation; schemathesis leaves out the schema's own URL (fetched just above)
    assert labels == {route.key for route in ROUTES} - {("GET", "/v1/openapi.json")}
    assert EXCLUDED <= labels, "an excluded operation is gone from the schema: update EXCLUDED"

    started = time.monotonic()
    failures: list[str] = []
    calls = 0
    for operation in operations:
        if (operation.method.upper(), operation.path) in EXCLUDED:
            continue
        for mode, examples in EXAMPLES.items():

            @hypothesis.settings(max_examples=examples, deadline=None, database=None, derandomize=True,
                                 suppress_health_check=list(hypothesis.HealthCheck),
                                 phases=[hypothesis.Phase.explicit, hypothesis.Phase.generate])
            @hypothesis.given(case=operation.as_strategy(generation_mode=mode))
            def run(case: schemathesis.Case) -> None:
                nonlocal calls
                calls += 1
                case.call_and_validate(headers=headers, checks=[not_a_server_error], timeout=15)

            try:
                run()
            except hypothesis.errors.Unsatisfiable:
                pass  # e.g. no negative case exists for an operation without parameters
            except Exception as exc:  # collect every operation's failure, then report them together
                failures.append(f"{operation.method.upper()} {operation.path} ({mode}):\n{exc}")
    elapsed = time.monotonic() - started
    assert node.alive, "the controller died during the run:\n" + node.log_text()[-3000:]
    assert not failures, "\n\n".join(failures)
    assert calls >= 300, f"only {calls} requests were generated"
    print(f"{calls} requests over {len(operations)} operations in {elapsed:.0f} s")
    assert "unhandled error" not in node.log_text(), node.log_text()[-3000:]
