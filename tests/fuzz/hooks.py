"""Where kurz's contract (DESIGN.md §3) deliberately differs from what Schemathesis
expects of a schema-valid or schema-violating request. tests/fuzz/run.sh loads this
file through SCHEMATHESIS_HOOKS.

Each rule drops one precise kind of failure, for a reason no OpenAPI document can
state: a rule that depends on the clock, on stored state or configuration, or on two
fields at once. Everything else fails the run. Rules match on the check, the status,
the error code and, where one code covers several rules, on the error message: if the
server's wording changes, the failure shows again and the rule must follow.
"""

import json
import re

import jsonschema_rs
import schemathesis

URL_OPS = {"POST /api/v1/urls", "POST /api/v1/urls/bulk", "PATCH /api/v1/urls/{code}"}
CREATE_OPS = {"POST /api/v1/urls", "POST /api/v1/urls/bulk"}

# (check, status, error code, message regex or None, operations or None, why).
# ST202 is `positive_data_acceptance`: a schema-valid request answered 4xx.
EXPECTED = [
    ("ST202", 410, "DISABLED", None, {"GET /{code}"},
     "a disabled link's redirect is 410 DISABLED: the link's state, not the request's shape"),
    ("ST202", 410, "EXPIRED", None, {"GET /{code}", "GET /api/v1/urls/{code}"},
     "an expired link is 410 EXPIRED: the link's state, not the request's shape"),
    ("ST202", 410, None, None, {"HEAD /{code}"},
     "HEAD of a disabled or expired link: 410 as its GET, without a body to name which"),
    ("ST202", 422, "IDEMPOTENCY_KEY_REUSED", None, None,
     "the fuzzer draws X-Idempotency-Key from a small space and so reuses keys with other "
     "bodies: 422 is the contract's answer to exactly that"),
    ("ST202", 400, "INVALID_REQUEST", r"expires_at must be in the future", URL_OPS,
     "'in the future' depends on the clock"),
    ("ST202", 400, "INVALID_REQUEST", r"expires_at must be within \d+ days", URL_OPS,
     "'within 10 years from now' depends on the clock"),
    ("ST202", 400, "INVALID_REQUEST", r"start_date must be before end_date",
     {"GET /api/v1/urls/{code}/stats"}, "a rule on two parameters at once"),
    ("ST202", 400, "INVALID_REQUEST", r"the range has more than \d+ buckets",
     {"GET /api/v1/urls/{code}/stats"}, "a rule on three parameters at once"),
    ("ST202", 400, "INVALID_URL", r"original_url is not a valid URL", URL_OPS,
     "whether a host is a valid (internationalised) domain name is more than a pattern can "
     "say; the document's pattern bounds the shape only"),
    ("ST202", 400, "INVALID_URL", r"original_url must not point at this shortener", URL_OPS,
     "which hosts are this service depends on the configuration"),
    ("ST202", 400, "INVALID_URL", r"original_url is longer than \d+ bytes once normalised", URL_OPS,
     "normalising (punycode, percent-encoding) can lengthen a URL the schema allowed"),
    ("ST202", 400, "INVALID_ALIAS", r"custom_alias '.*' is a reserved word", CREATE_OPS,
     "reserved words are compared ignoring case, which a pattern can only say by spelling "
     "every case; the document names them in the description"),
]


def _error(response):
    try:
        body = json.loads(response.content)
    except (ValueError, TypeError):
        return None, ""
    if not isinstance(body, dict):
        return None, ""
    return body.get("code"), str(body.get("error", ""))


@schemathesis.hook
def filter_failure(context, failure, case, response):
    """False drops the failure (it is the contract's own answer); True keeps it."""
    if response is None:
        return True
    code, message = _error(response)
    operation = f"{case.operation.method.upper()} {case.operation.path}"
    for check, status, error_code, pattern, operations, _why in EXPECTED:
        if (
            failure.code == check
            and response.status_code == status
            and code == error_code
            and (pattern is None or re.match(pattern, message))
            and (operations is None or operation in operations)
        ):
            return False
    # Metadata limits are in bytes (keys 1-64, all keys and values 4096); a schema counts
    # characters. Dropped only when the keys are within 1-64 characters, so a key the
    # document itself rules out (empty, too long) still fails.
    if (
        failure.code == "ST202"
        and response.status_code == 400
        and code == "INVALID_REQUEST"
        and re.match(r"metadata (keys must be 1 to \d+ bytes|must be at most \d+ bytes)", message)
        and operation in URL_OPS
        and all(1 <= len(k) <= 64 for k in _metadata_keys(case.body))
    ):
        return False
    # ST201 is `negative_data_rejection`: a schema-violating request answered 2xx.
    if failure.code == "ST201" and operation == "POST /api/v1/urls/bulk":
        return not _bulk_items_failed_alone(case, response)
    return True


def _metadata_keys(body):
    items = body.get("urls") if isinstance(body, dict) and "urls" in body else [body]
    keys = []
    for item in items if isinstance(items, list) else []:
        if isinstance(item, dict) and isinstance(item.get("metadata"), dict):
            keys.extend(item["metadata"])
    return keys


def _bulk_items_failed_alone(case, response):
    """A bulk whose envelope is valid but some items are not: the contract answers 207
    with exactly those items failed ("one bad item never fails the others"). True when
    the response is that."""
    if response.status_code != 207:
        return False
    body = case.body
    if not isinstance(body, dict) or set(body) != {"urls"}:
        return False
    items = body["urls"]
    if not isinstance(items, list) or not 1 <= len(items) <= 1000:
        return False
    try:
        results = json.loads(response.content)["results"]
    except (ValueError, KeyError, TypeError):
        return False
    if not isinstance(results, list) or len(results) != len(items):
        return False
    item_ok = _item_validator(case.operation.schema.raw_schema)
    bad = [i for i, item in enumerate(items) if not item_ok(item)]
    return bool(bad) and all(results[i].get("status") == "failed" for i in bad)


_VALIDATORS = {}


def _item_validator(document):
    key = id(document)
    if key not in _VALIDATORS:
        schema = {"$ref": "#/components/schemas/CreateLink", "components": document["components"]}
        _VALIDATORS[key] = jsonschema_rs.validator_for(schema, validate_formats=True).is_valid
    return _VALIDATORS[key]
