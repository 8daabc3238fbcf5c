"""Per-call identity objects: references counted per Asterisk lifetime (issue 13, item 5)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from stasis_app.callflow.identity import IdentityObjects


class ConfigOnly:
    """Asterisk's dynamic configuration, in memory (the one part of ARI this class uses)."""

    def __init__(self) -> None:
        self.objects: dict[tuple[str, str], dict[str, str]] = {
            ("endpoint", "softswitch"): {"context": "from-softswitch"}
        }

    async def get_config(self, _cls: str, object_type: str, object_id: str) -> dict[str, str]:
        return dict(self.objects[(object_type, object_id)])

    async def put_config(
        self, _cls: str, object_type: str, object_id: str, fields: Mapping[str, str]
    ) -> None:
        self.objects[(object_type, object_id)] = dict(fields)

    async def delete_config(self, _cls: str, object_type: str, object_id: str) -> bool:
        return self.objects.pop((object_type, object_id), None) is not None


def identities(ari: ConfigOnly) -> IdentityObjects:
    fake: Any = ari
    return IdentityObjects(fake, trunk="softswitch", realm="lab", prefix="tw")


async def test_a_release_from_before_an_asterisk_restart_touches_nothing() -> None:
    ari = ConfigOnly()
    objects = identities(ari)
    old = await objects.acquire("902", "0" * 32)
    endpoint = ("endpoint", objects.endpoint_id(old.key))
    objects.forget_all()  # Asterisk restarted: its memory objects are gone
    del ari.objects[endpoint]
    new = await objects.acquire("902", "0" * 32)  # a new call: created again
    assert new.key == old.key and endpoint in ari.objects
    await objects.release(old)  # the call from before the restart ends late
    assert endpoint in ari.objects and objects.live_objects == 1
    await objects.release(new)
    assert endpoint not in ari.objects and objects.live_objects == 0


async def test_shared_identity_deleted_by_its_last_call() -> None:
    ari = ConfigOnly()
    objects = identities(ari)
    first = await objects.acquire("902", "1" * 32)
    second = await objects.acquire("902", "1" * 32)
    await objects.release(first)
    assert ("endpoint", objects.endpoint_id(first.key)) in ari.objects
    await objects.release(second)
    assert ("endpoint", objects.endpoint_id(first.key)) not in ari.objects
