"""The API's use cases, shared by the JSON and XML-RPC front ends.

Each takes what the client sent, validates it, runs the store query and returns a plain dict
shaped by a response model (JSON-ready: datetimes as ISO 8601 strings). Failures are ApiErrors.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from stasis_app.api.errors import Conflict, NotFound, PolicyRefused
from stasis_app.api.schemas import CallbackCancelled, CallbackCreated, CallbackDetail, CallbackPage
from stasis_app.api.validation import IntakeRules, parse_create, parse_id, parse_list_query
from stasis_app.domain.policy import DestinationPolicy
from stasis_app.store.admission import count_refusal
from stasis_app.store.callbacks import CallbackStore

View = dict[str, Any]


class Callbacks:
    def __init__(self, store: CallbackStore, rules: IntakeRules, policy: DestinationPolicy) -> None:
        self._store = store
        self._rules = rules
        self._policy = policy

    async def create(self, data: object) -> View:
        new = parse_create(data, self._rules)
        # The claim's gate would refuse it too; saying so now spares the client a row to poll.
        account = await self._store.account_policy(new.username)
        refusal = self._policy.check(new.original_cli, new.original_cld, account)
        if refusal is not None:
            count_refusal(refusal)
            raise PolicyRefused(refusal.reason, refusal.rule.value)
        row = await self._store.create(new)
        return CallbackCreated.model_validate(row).model_dump(mode="json")

    async def get(self, raw_id: object) -> View:
        request_id = parse_id(raw_id)
        found = await self._store.get(request_id)
        if found is None:
            raise NotFound(f"no callback request {request_id}")
        row, history = found
        return CallbackDetail.model_validate({**row, "history": history}).model_dump(mode="json")

    async def list(self, query: Mapping[str, Sequence[str]]) -> View:
        page = await self._store.list(parse_list_query(query))
        cursor = str(page.rows[-1]["id"]) if page.more else None
        return CallbackPage.model_validate({"items": page.rows, "next_cursor": cursor}).model_dump(
            mode="json"
        )

    async def cancel(self, raw_id: object) -> View:
        request_id = parse_id(raw_id)
        outcome = await self._store.cancel(request_id)
        if outcome is None:
            raise NotFound(f"no callback request {request_id}")
        if not outcome.changed:
            raise Conflict(
                f"callback request {request_id} is already {outcome.status}", outcome.status
            )
        return CallbackCancelled.model_validate(
            {"id": outcome.id, "status": outcome.status, "result": outcome.result}
        ).model_dump(mode="json")
