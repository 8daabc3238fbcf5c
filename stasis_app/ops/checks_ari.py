"""Asterisk through ARI, as the service will use it: credentials, version, app name, trunk
endpoint, and in ``dynamic`` identity mode the memory wizard (a probe auth + endpoint pair).

Responses of the dynamic-config calls are never printed (the auth PUT echoes ``md5_cred``):
only ARI's own error message, which the client already scrubs of the values it sent.
"""

from __future__ import annotations

import contextlib
import re
import secrets
from dataclasses import dataclass

from stasis_app.ari import AriClient, AriError, AriNotFound
from stasis_app.ari.rest import AriRest
from stasis_app.callflow.identity import RES_PJSIP, IdentityObjects
from stasis_app.config import ARI_SIMULATOR, IdentityMode, Settings
from stasis_app.ops.report import Check, Report

TRUNK_SHOWN = ("aors", "context", "transport", "allow", "from_domain", "outbound_auth")
WIZARD_FIX = (
    "add the memory wizard to sorcery.conf ([res_pjsip] endpoint = memory, auth = memory, "
    "aor = memory after the config lines; deploy/asterisk/sorcery.conf) and restart Asterisk"
)
PROBE_USER = "twoway-doctor"
_VERSION = re.compile(r"(\d+)\.(\d+)(?:\.(\d+))?")


@dataclass(frozen=True, slots=True)
class Version:
    major: int
    minor: int

    @property
    def sip_codes(self) -> bool:
        """``tech_cause`` (the SIP code) on hangup events: 20.17+, 22.7+, 23+."""
        return (
            (self.major == 20 and self.minor >= 17)
            or (self.major == 22 and self.minor >= 7)
            or self.major >= 23
        )


def ari_settings(settings: Settings, timeout: float) -> Settings:
    """The service's settings with each ARI request bounded by the doctor's timeout."""
    return settings.model_copy(update={"ari_timeout": min(settings.ari_timeout, timeout)})


async def run(report: Report, settings: Settings) -> None:
    if not settings.ari_url or settings.ari_url == ARI_SIMULATOR:
        what = "the built-in simulator" if settings.ari_url else "empty: `run` refuses to start"
        report.add_fail(
            "ari",
            f"TWOWAY_ARI_URL is {what}, no real calls",
            "set TWOWAY_ARI_URL to your Asterisk's HTTP server, e.g. http://127.0.0.1:8088",
        )
        return
    async with AriClient(ari_settings(settings, report.timeout)) as ari:
        async with report.check("ari", timeout_fix="is Asterisk up? http.conf bindaddr") as check:
            info = await _reachable(check, ari.rest, settings)
        if info is None:
            return
        async with report.check("asterisk") as check:
            _version(check, info)
        async with report.check("stasis app") as check:
            await _app_free(check, ari.rest, settings.ari_app)
        async with report.check("trunk") as check:
            await _trunk(check, ari.rest, settings.trunk_endpoint)
        if settings.identity_mode is IdentityMode.STATIC:
            return
        async with report.check("sip realm") as check:
            _realm(check, settings)
        if check.passed:  # the probe's auth object needs the realm
            async with report.check("memory wizard") as check:
                await _memory_wizard(check, ari.rest, settings)


async def _reachable(check: Check, rest: AriRest, settings: Settings) -> str | None:
    where = f"{settings.ari_url} as {settings.ari_user}"
    try:
        info = await rest.info("system")
    except AriError as exc:
        if exc.status == 401:
            check.fail(
                f"{where}: credentials refused (401)",
                "TWOWAY_ARI_USER / TWOWAY_ARI_PASSWORD must match a user in ari.conf",
            )
        elif exc.status == 404:
            check.fail(
                f"{where}: no ARI there (404)",
                "http.conf enabled = yes, res_ari and res_ari_asterisk loaded, ari.conf enabled",
            )
        else:
            check.fail(f"{where}: {exc}", "is Asterisk up and TWOWAY_ARI_URL right?")
        return None
    version = info.get("system", {}).get("version") if isinstance(info, dict) else None
    check.ok(f"{where}: answered")
    return version if isinstance(version, str) else ""


def _version(check: Check, text: str) -> None:
    match = _VERSION.search(text)
    if match is None:
        check.warn(f"Asterisk {text or '(no version)'}: cannot tell the version", "16+ needed")
        return
    v = Version(int(match.group(1)), int(match.group(2)))
    notes = []
    if not v.sip_codes:
        notes.append("no SIP codes on hangups before 20.17 / 22.7: leg_*_sip_code stay empty")
    if v.major == 16:
        notes.append(
            "16 reports no answer as cause 0 and a far-end hang-up as 16 (the app classifies "
            "by its own ring timer); reason_code is ignored (named reasons used)"
        )
    if v.major == 16 and v.minor < 27:
        notes.append("no protocol_id before 16.27: SIP Call-IDs are not recorded")
    found = f"Asterisk {text}" + ("; " + "; ".join(notes) if notes else "")
    if v.major < 16:
        check.fail(found, "Asterisk 16 or later is needed (20 or 22 measured best)")
    elif v.major not in (16, 20, 22) and v.major < 23:
        check.warn(found + "; not a measured version", "16, 20 and 22 are the measured ones")
    elif notes:
        check.warn(found, "upgrade to 20.17+ or 22.7+ for SIP codes")
    else:
        check.ok(found + ": causes, SIP codes and Call-IDs all reported")


async def _app_free(check: Check, rest: AriRest, app: str) -> None:
    found = await rest.application(app)
    if found is None:
        check.ok(f"no process is connected as '{app}'")
        return
    channels = len(found.get("channel_ids") or [])
    check.fail(
        f"'{app}' is already registered ({channels} channels): another process is connected",
        "stop it (a running twoway-callback?) or give each instance its own TWOWAY_ARI_APP "
        "(and the dialplan's Stasis())",
    )


async def _trunk(check: Check, rest: AriRest, trunk: str) -> None:
    try:
        attributes = await rest.get_config(RES_PJSIP, "endpoint", trunk)
    except AriNotFound:
        check.fail(
            f"no PJSIP endpoint '{trunk}'",
            "TWOWAY_TRUNK_ENDPOINT must name the pjsip.conf endpoint towards the softswitch "
            "(asterisk -rx 'pjsip show endpoints')",
        )
        return
    shown = ", ".join(f"{k}={attributes[k]}" for k in TRUNK_SHOWN if attributes.get(k))
    found = f"endpoint '{trunk}', {len(attributes)} attributes: {shown}"
    aor = attributes.get("aors", "").split(",")[0].strip()
    contact = (await rest.get_config(RES_PJSIP, "aor", aor)).get("contact", "") if aor else ""
    if not contact:
        check.warn(
            found + f"; aor '{aor}' has no static contact",
            "give the trunk's aor contact = sip:<softswitch>:5060 (or let it register)",
        )
    else:
        check.ok(found + f"; contact {contact}")


def _realm(check: Check, settings: Settings) -> None:
    if settings.sip_realm:
        check.ok(f"TWOWAY_SIP_REALM={settings.sip_realm}")
    else:
        check.fail(
            "TWOWAY_SIP_REALM is empty: per-call auth objects would answer any realm's challenge "
            "with an HA1 made for another",
            "set TWOWAY_SIP_REALM to the realm the softswitch challenges with",
        )


async def _memory_wizard(check: Check, rest: AriRest, settings: Settings) -> None:
    """Create and delete a probe auth + endpoint pair the way the service's calls do."""
    objects = IdentityObjects(
        rest,
        trunk=settings.trunk_endpoint,
        realm=settings.sip_realm,
        prefix=f"{settings.id_prefix}-doctor",
    )
    ha1 = secrets.token_hex(16)  # a throw-away credential: the probe never dials
    key = objects.key(PROBE_USER, ha1)
    endpoint = objects.endpoint_id(key)
    released = False
    try:
        await objects.release(await objects.acquire(PROBE_USER, ha1))  # deletes both
        released = True
    except AriError as exc:
        if exc.status == 403 and "Cannot create sorcery objects" in exc.message:
            check.fail(f'creating auth/endpoint answered 403 "{exc.message}"', WIZARD_FIX)
        elif exc.status == 403:
            check.fail(f"{exc}", "the ARI user needs read_only = no in ari.conf")
        else:
            check.fail(f"{exc}", "the per-call endpoint copies the trunk's attributes: see above")
        return
    finally:
        if not released:  # whatever got created goes, also after a failure half-way
            for kind, obj_id in (("endpoint", endpoint), ("auth", objects.auth_id(key))):
                with contextlib.suppress(AriError):
                    await rest.delete_config(RES_PJSIP, kind, obj_id)
    check.ok(f"created and deleted a memory auth + endpoint ('{endpoint}')")
