"""Offline verification of an exported audit chain (JSON Lines, as
`client.audit.export()` and `airt audit export` write it).

Each event's `hash` is `SHA-256(prev_hash ‖ canonical JSON of the event
without prev_hash and hash)`: keys sorted, no spaces, UTF-8. The chain holds
when every hash is right, every `prev_hash` is the previous event's hash
(64 zeros before sequence 1) and sequences have no gaps. An export cannot
show that newer events were cut off its end: compare its last hash with the
live service (`client.audit.verify`) for that."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable

from .models import ChainCheck

GENESIS = "0" * 64


def canonical(value: object) -> str:
    """The canonical JSON the services hash (sorted keys, compact, UTF-8)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def verify_export(lines: Iterable[str]) -> ChainCheck:
    """Checks an exported chain; the first broken event, if any, and why."""
    previous_hash, previous_sequence, checked = None, None, 0
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            event = json.loads(line)
            claimed, prev_hash, sequence = event.pop("hash"), event.pop("prev_hash"), event["sequence"]
        except (ValueError, KeyError, TypeError) as error:
            return ChainCheck(False, checked, 0, f"line {number} is not an audit event: {error}")
        expected_prev = GENESIS if sequence == 1 else previous_hash
        if previous_sequence is not None and sequence != previous_sequence + 1:
            return ChainCheck(False, checked, sequence, f"missing event before sequence {sequence}")
        if expected_prev is not None and prev_hash != expected_prev:
            return ChainCheck(False, checked, sequence, "prev_hash does not name the previous event")
        actual = hashlib.sha256((prev_hash + canonical(event)).encode()).hexdigest()
        if actual != claimed:
            return ChainCheck(False, checked, sequence, "hash mismatch: the event was changed")
        previous_hash, previous_sequence, checked = claimed, sequence, checked + 1
    return ChainCheck(True, checked, 0, "")
