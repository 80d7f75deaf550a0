"""Job ids as people type them: any unique prefix in, the shortest unique prefix out (like git).

Input: a whole UUID is looked up directly; a prefix (at least `MIN_INPUT_DIGITS` hex digits,
hyphens optional) is matched against the `idx:all` index with one `ZSCAN ... MATCH prefix*`
pass. That pass walks the index on the server (no keyspace scan, only matching ids cross
the wire); it runs once per id an operator types, never per row of a listing.

Output: `short_ids` gives each listed id the shortest prefix, at least `SHORT_MIN_CHARS`
long (the first group of a UUID), that no other id of the same listing shares. With random
UUIDs an 8-digit prefix is shared by another stored job about once in 4,000 listings of a
million-job store; when that happens, the prefix typed back is reported as ambiguous, with
its candidates, and `--full-ids` shows whole ids.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable, Sequence

from cancelq.core.errors import CancelqError, InvalidInput
from cancelq.store.audit import AuditStore

MIN_INPUT_DIGITS = 4
SHORT_MIN_CHARS = 8
SCAN_COUNT = 5_000
MAX_CANDIDATES = 5
_HYPHENS_AFTER = (8, 12, 16, 20)  # hex digits before each hyphen of a canonical UUID
_PREFIX = re.compile(r"^[0-9a-f-]+$")


class JobNotFound(CancelqError):
    """No stored job has this id or prefix: the operation cannot proceed (exit 1)."""

    def __init__(self, field: str, text: str) -> None:
        super().__init__(f"{field}: no job {text!r}")
        self.field = field


class AmbiguousJobId(InvalidInput):
    """The prefix names more than one job: the caller must type more of it (exit 2)."""

    def __init__(self, field: str, text: str, candidates: Sequence[str]) -> None:
        shown = ", ".join(candidates[:MAX_CANDIDATES])
        more = "" if len(candidates) <= MAX_CANDIDATES else ", ..."
        super().__init__(field, f"{text!r} matches several jobs ({shown}{more}): type more of it")
        self.candidates = tuple(candidates)


def canonical_prefix(text: str, field: str = "job_id") -> str:
    """Lower case, hyphens where a canonical UUID has them; refuses what no job id starts with."""
    value = text.strip().lower()
    if not value or not _PREFIX.match(value):
        raise InvalidInput(field, f"not a job id or job id prefix: {text[:60]!r}")
    digits = value.replace("-", "")
    if len(digits) < MIN_INPUT_DIGITS or len(digits) > 32:
        raise InvalidInput(
            field, f"not a job id or prefix of at least {MIN_INPUT_DIGITS} hex digits: "
            f"{text[:60]!r}"
        )
    out = digits
    for position in reversed(_HYPHENS_AFTER):
        if len(digits) > position:
            out = out[:position] + "-" + out[position:]
    if "-" in value and not out.startswith(value.rstrip("-")):
        raise InvalidInput(field, f"hyphens not where a job id has them: {text[:60]!r}")
    return out


def resolve_job_id(store: AuditStore, text: str, field: str = "job_id") -> str:
    """The one stored job `text` names (whole id or unique prefix).

    Raises `InvalidInput` for something that is no id (or an ambiguous prefix), and
    `JobNotFound` when no stored job matches.
    """
    prefix = canonical_prefix(text, field)
    if len(prefix) == 36:
        job_id = str(uuid.UUID(prefix))
        if not store.existing([job_id]):
            raise JobNotFound(field, text.strip())
        return job_id
    candidates = _existing(store, _matching(store, prefix))
    if not candidates:
        raise JobNotFound(field, text.strip())
    if len(candidates) > 1:
        raise AmbiguousJobId(field, text.strip(), sorted(candidates))
    return candidates[0]


def resolve_job_ids(
    store: AuditStore, texts: Iterable[str], field: str = "JOB_ID", *, keep_missing: bool = False
) -> list[str]:
    """Each text's job id, all resolved before any is used.

    With `keep_missing`, a text that names no job (no match, or no id at all) is kept as
    typed, for a per-id "no such job" report; an ambiguous prefix still raises, since
    acting on the wrong one of two jobs is worse than acting on none.
    """
    ids: list[str] = []
    for text in texts:
        try:
            ids.append(resolve_job_id(store, text, field))
        except AmbiguousJobId:
            raise
        except (JobNotFound, InvalidInput):
            if not keep_missing:
                raise
            ids.append(text.strip())
    return ids


def _matching(store: AuditStore, prefix: str) -> list[str]:
    """Ids in `idx:all` that start with `prefix`; stops early once it is clearly ambiguous."""
    return store.ids_starting_with(prefix, enough=MAX_CANDIDATES, count=SCAN_COUNT)


def _existing(store: AuditStore, job_ids: list[str]) -> list[str]:
    """Drop index entries whose record expired (`AUDIT_RETENTION_DAYS`)."""
    return store.existing(job_ids)


def short_ids(job_ids: Iterable[str], *, min_chars: int = SHORT_MIN_CHARS) -> dict[str, str]:
    """Each id's shortest prefix that no other id of `job_ids` shares, at least `min_chars`."""
    ordered = sorted(set(job_ids))
    short: dict[str, str] = {}
    for i, job_id in enumerate(ordered):
        shared = 0
        for neighbour in ordered[max(0, i - 1) : i] + ordered[i + 1 : i + 2]:
            shared = max(shared, _common(job_id, neighbour))
        length = max(min_chars, shared + 1)
        if length < len(job_id) and job_id[length - 1] == "-":
            length += 1  # never end on a hyphen: `abcd1234-` reads as a typo
        short[job_id] = job_id[:length]
    return short


def _common(a: str, b: str) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n

