"""Sorcery attribute lists as the recorded Asterisk versions report them.

Taken from ``ari-traces/versions/asterisk-{16,20,22}``: the PUT of a memory endpoint answers with
every attribute the version knows, in the order Asterisk prints them (its hash order; kept so
responses look like the traces). 16 knows fewer endpoint attributes than 20/22, and sending one it
does not know is a 400 there: the per-version lists drive that validation.
"""

from __future__ import annotations

_INTERSECT = "prefer:pending, operation:intersect, keep:all, transcode:allow"
_UNION = "prefer:pending, operation:union, keep:all, transcode:allow"

# The trunk endpoint of the lab (pjsip.conf ``softswitch``) as 22.10.1 prints it: a GET of it is
# the template the app copies into per-call endpoints. ``outbound_auth`` is empty: the static
# trunk has no credentials of its own.
ENDPOINT_22: tuple[tuple[str, str], ...] = (
    ("rpid_immediate", "false"),
    ("webrtc", "no"),
    ("ignore_183_without_sdp", "false"),
    ("send_aoc", "false"),
    ("device_state_busy_at", "0"),
    ("t38_udptl_maxdatagram", "0"),
    ("codec_prefs_incoming_answer", _INTERSECT),
    ("security_negotiation", "no"),
    ("dtls_rekey", "0"),
    ("rtp_port_end", "0"),
    ("named_pickup_group", ""),
    ("direct_media_method", "invite"),
    ("send_rpid", "false"),
    ("pickup_group", ""),
    ("sdp_session", "Asterisk"),
    ("dtls_verify", "No"),
    ("message_context", ""),
    ("tenantid", ""),
    ("mailboxes", ""),
    ("record_on_feature", "automixmon"),
    ("dtls_private_key", ""),
    ("dtls_fingerprint", "SHA-256"),
    ("overlap_context", ""),
    ("outgoing_call_offer_pref", "remote_merge"),
    ("rtp_port_start", "0"),
    ("from_domain", ""),
    ("timers_sess_expires", "1800"),
    ("named_call_group", ""),
    ("dtls_cipher", ""),
    ("media_encryption_optimistic", "false"),
    ("suppress_q850_reason_headers", "false"),
    ("aors", "softswitch"),
    ("identify_by", "username,ip"),
    ("callerid_privacy", "allowed_not_screened"),
    ("mwi_subscribe_replaces_unsolicited", "no"),
    ("cos_audio", "0"),
    ("follow_early_media_fork", "true"),
    ("context", "from-softswitch"),
    ("rtp_symmetric", "true"),
    ("transport", "transport-udp"),
    ("moh_suggest", "default"),
    ("t38_udptl", "false"),
    ("fax_detect", "false"),
    ("t38_bind_udptl_to_media_address", "false"),
    ("tos_video", "0"),
    ("srtp_tag_32", "false"),
    ("refer_blind_progress", "true"),
    ("max_audio_streams", "1"),
    ("bundle", "false"),
    ("use_avpf", "false"),
    ("call_group", ""),
    ("send_connected_line", "yes"),
    ("fax_detect_timeout", "0"),
    ("sdp_owner", "-"),
    ("force_rport", "true"),
    ("callerid_tag", ""),
    ("rtp_timeout_hold", "0"),
    ("suppress_moh_on_sendonly", "false"),
    ("use_ptime", "false"),
    ("media_address", "127.0.0.1"),
    ("voicemail_extension", ""),
    ("rtp_timeout", "0"),
    ("stir_shaken", "no"),
    ("set_var", ""),
    ("contact_acl", ""),
    ("preferred_codec_only", "false"),
    ("geoloc_outgoing_call_profile", ""),
    ("force_avp", "false"),
    ("record_off_feature", "automixmon"),
    ("from_user", ""),
    ("send_diversion", "true"),
    ("send_history_info", "false"),
    ("t38_udptl_ipv6", "false"),
    ("tone_zone", ""),
    ("language", ""),
    ("allow_subscribe", "true"),
    ("rtp_ipv6", "false"),
    ("callerid", "<unknown>"),
    ("moh_passthrough", "false"),
    ("cos_video", "0"),
    ("dtls_auto_generate_cert", "No"),
    ("asymmetric_rtp_codec", "false"),
    ("geoloc_incoming_call_profile", ""),
    ("ice_support", "false"),
    ("aggregate_mwi", "true"),
    ("one_touch_recording", "false"),
    ("mwi_from_user", ""),
    ("redirect_method", "user"),
    ("accountcode", ""),
    ("codec_prefs_outgoing_answer", _INTERSECT),
    ("allow", "(ulaw|alaw)"),
    ("rewrite_contact", "false"),
    ("user_eq_phone", "false"),
    ("rtp_engine", "asterisk"),
    ("follow_redirect_methods", ""),
    ("subscribe_context", ""),
    ("notify_early_inuse_ringing", "false"),
    ("incoming_mwi_mailbox", ""),
    ("incoming_call_offer_pref", "local"),
    ("allow_unauthenticated_options", "false"),
    ("auth", ""),
    ("direct_media_glare_mitigation", "none"),
    ("trust_id_inbound", "false"),
    ("stir_shaken_profile", ""),
    ("bind_rtp_to_media_address", "true"),
    ("disable_direct_media_on_nat", "false"),
    ("media_encryption", "no"),
    ("media_use_received_transport", "false"),
    ("allow_overlap", "true"),
    ("dtmf_mode", "rfc4733"),
    ("outbound_auth", ""),
    ("tos_audio", "0"),
    ("dtls_cert_file", ""),
    ("dtls_ca_path", ""),
    ("dtls_setup", "active"),
    ("connected_line_method", "invite"),
    ("g726_non_standard", "false"),
    ("100rel", "yes"),
    ("timers", "yes"),
    ("direct_media", "false"),
    ("acl", ""),
    ("timers_min_se", "90"),
    ("trust_id_outbound", "false"),
    ("sub_min_expiry", "0"),
    ("rtcp_mux", "false"),
    ("max_video_streams", "1"),
    ("accept_multiple_sdp_answers", "false"),
    ("codec_prefs_incoming_offer", _INTERSECT),
    ("codec_prefs_outgoing_offer", _UNION),
    ("trust_connected_line", "yes"),
    ("send_pai", "false"),
    ("rtp_keepalive", "0"),
    ("t38_udptl_ec", "none"),
    ("t38_udptl_nat", "false"),
    ("allow_transfer", "true"),
    ("dtls_ca_file", ""),
    ("outbound_proxy", ""),
    ("inband_progress", "false"),
)

# Endpoint attributes that 20/22 have and 16.30 does not.
ONLY_SINCE_20: frozenset[str] = frozenset(
    {
        "codec_prefs_incoming_answer",
        "codec_prefs_incoming_offer",
        "codec_prefs_outgoing_answer",
        "codec_prefs_outgoing_offer",
        "follow_redirect_methods",
        "incoming_call_offer_pref",
        "outgoing_call_offer_pref",
        "overlap_context",
        "redirect_method",
        "rtp_port_end",
        "rtp_port_start",
        "security_negotiation",
        "send_aoc",
        "suppress_moh_on_sendonly",
        "tenantid",
    }
)

# Values that differ on 16 (same attribute, other spelling).
VALUES_16: dict[str, str] = {"stir_shaken": "off"}

# Settings a fresh memory endpoint gets when a PUT does not name them (Asterisk defaults); every
# other attribute starts as in the trunk template above.
FRESH_ENDPOINT: dict[str, str] = {
    "aors": "",
    "context": "default",
    "transport": "",
    "outbound_auth": "",
    "allow": "",
    "direct_media": "true",
    "media_address": "",
    "bind_rtp_to_media_address": "false",
    "rtp_symmetric": "false",
}

# Write-only endpoint options: accepted by a PUT, never printed back.
ENDPOINT_WRITE_ONLY: frozenset[str] = frozenset({"disallow"})

# res_pjsip auth objects, defaults in print order (20/22 print 12 attributes, 16 prints 6).
AUTH_22: tuple[tuple[str, str], ...] = (
    ("oauth_secret", ""),
    ("password_digest", ""),
    ("supported_algorithms_uas", "MD5"),
    ("refresh_token", ""),
    ("username", ""),
    ("md5_cred", ""),
    ("realm", ""),
    ("auth_type", "userpass"),
    ("password", ""),
    ("supported_algorithms_uac", "MD5"),
    ("nonce_lifetime", "32"),
    ("oauth_clientid", ""),
)
AUTH_16_NAMES: frozenset[str] = frozenset(
    {"username", "md5_cred", "realm", "auth_type", "password", "nonce_lifetime"}
)


def endpoint_template(version: int) -> list[tuple[str, str]]:
    """The trunk endpoint's attributes as ``version`` prints them."""
    if version >= 20:
        return list(ENDPOINT_22)
    return [(k, VALUES_16.get(k, v)) for k, v in ENDPOINT_22 if k not in ONLY_SINCE_20]


def auth_template(version: int) -> list[tuple[str, str]]:
    """A fresh auth object's attributes as ``version`` prints them."""
    if version >= 20:
        return list(AUTH_22)
    return [(k, v) for k, v in AUTH_22 if k in AUTH_16_NAMES]
