"""What vaxtrail's APIs require that JSON Schema cannot say, applied to the requests schemathesis
generates as valid (positive cases only; invalid ones are left as generated, so the checks that
invalid data is refused still see them). Each rule is also written in the OpenAPI document's
descriptions:

- a vaccination's dose is at most its totalDoses; dates (vaccination, birth) are not after today;
  effectiveUntil is not before effectiveStart; a recipient has a date of birth or an age;
- a bulk file's header names DIVOC's columns (the document says text/csv);
- a certificate id ends in a check character, and the ids, event ids and recipient keys that lead
  to an answer are the ones the deployment holds: `VAXTRAIL_ST_CERTIFICATE`, `VAXTRAIL_ST_EVENT`
  and `VAXTRAIL_ST_RECIPIENT` name one of each (the test posts a vaccination first);
- a credential to verify is one the deployment signed (`VAXTRAIL_ST_CREDENTIAL`, a file; as JSON
  or as DIVOC's QR payload), since a signature is beyond a schema;
- an audit read names exactly one of recipient, certificate or from; a range's `from` is not after
  its `to`.
"""

import datetime
import io
import json
import os
import pathlib
import zipfile

import schemathesis

ROOT = pathlib.Path(__file__).resolve().parent.parent
BULK_HEADER = (ROOT / "fixtures" / "divoc" / "bulk-certify.csv").read_text().splitlines()[0]
# Two days back: "today" in any programme time zone.
LATEST = datetime.date.today() - datetime.timedelta(days=2)
KNOWN = {
    "certificate": os.environ.get("VAXTRAIL_ST_CERTIFICATE", ""),
    "event": os.environ.get("VAXTRAIL_ST_EVENT", ""),
    "recipient": os.environ.get("VAXTRAIL_ST_RECIPIENT", ""),
}
RECORDS = {"/v1/certify", "/v1/vaccinations", "/v1/corrections"}
# A credential the deployment issued (`VAXTRAIL_ST_CREDENTIAL`, a file): what a verifier sends.
_CREDENTIAL_FILE = os.environ.get("VAXTRAIL_ST_CREDENTIAL", "")
CREDENTIAL = pathlib.Path(_CREDENTIAL_FILE).read_text() if _CREDENTIAL_FILE else ""


def _qr_payload(credential):
    """DIVOC's QR payload: a ZIP holding certificate.json."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("certificate.json", credential)
    return buffer.getvalue()


def _day(value):
    """The date a generated date or timestamp names, or None."""
    try:
        return datetime.date.fromisoformat(str(value)[:10])
    except ValueError:
        return None


def _not_after_latest(holder, key):
    day = _day(holder.get(key))
    if day is not None and day > LATEST:
        holder[key] = LATEST.isoformat()


def _blank(value):
    return value is None or (isinstance(value, str) and not value.strip())


def _record(record):
    if not isinstance(record, dict):
        return
    vaccination = record.get("vaccination")
    if isinstance(vaccination, dict):
        try:
            # Numbers may come as 2, 2.0 or "2".
            dose, total = (float(str(vaccination[k]).strip()) for k in ("dose", "totalDoses"))
            if dose > total:
                vaccination["dose"] = total
        except (KeyError, ValueError):
            pass
        _not_after_latest(vaccination, "date")
        start, until = _day(vaccination.get("effectiveStart")), _day(vaccination.get("effectiveUntil"))
        if start and until and start > until:
            vaccination["effectiveStart"], vaccination["effectiveUntil"] = (
                vaccination["effectiveUntil"],
                vaccination["effectiveStart"],
            )
    recipient = record.get("recipient")
    if isinstance(recipient, dict):
        _not_after_latest(recipient, "dob")
        if _blank(recipient.get("dob")) and _blank(recipient.get("age")):
            recipient["age"] = 30
    if "certificateId" in record and not _blank(record["certificateId"]) and KNOWN["certificate"]:
        record["certificateId"] = KNOWN["certificate"]


@schemathesis.hook
def map_case(ctx, case):
    if not case.meta.generation.mode.is_positive:
        return case
    path = ctx.operation.path
    if path in RECORDS:
        for record in case.body if isinstance(case.body, list) else [case.body]:
            _record(record)
    elif path == "/v1/vaccinations/bulk":
        case.body = BULK_HEADER + "\n"
    elif path == "/v1/revocations" and isinstance(case.body, dict) and KNOWN["certificate"]:
        case.body["certificateId"] = KNOWN["certificate"]
        case.body["recipientKey"] = KNOWN["recipient"]
    elif path == "/v1/verify" and CREDENTIAL:
        if case.media_type == "application/zip":
            case.body = _qr_payload(CREDENTIAL)
        else:
            case.body = json.loads(CREDENTIAL)
    params = case.path_parameters or {}
    for name, known in (("id", "certificate"), ("eventId", "event"), ("key", "recipient")):
        if name in params and KNOWN[known]:
            params[name] = KNOWN[known]
    if path.startswith("/v1/analytics/"):
        query = case.query or {}
        start, end = _day(query.get("from")), _day(query.get("to"))
        if start and end and start > end:
            query["from"], query["to"] = query["to"], query["from"]
    if path == "/v1/audit/events":
        query = dict(case.query or {})
        chosen = [k for k in ("recipient", "certificate", "from") if k in query]
        for extra in chosen[1:]:
            query.pop(extra)
        if not chosen:
            query["recipient"] = KNOWN["recipient"]
        if "certificate" in query and KNOWN["certificate"]:
            query["certificate"] = KNOWN["certificate"]
        if "from" not in query:
            query.pop("to", None)
        elif "to" in query and str(query["to"]) < str(query["from"]):
            query["from"], query["to"] = query["to"], query["from"]
        case.query = query
    return case
