"""schemathesis hooks for test_openapi.py (SCHEMATHESIS_HOOKS)."""

import schemathesis
from hypothesis import strategies as st

# A page token is one the server issued (the document's `format: page-token`); a request of the
# run asks for the first page, the only one whose token it can know.
schemathesis.openapi.format("page-token", st.just(""))


@schemathesis.hook
def map_body(context, body):
    """A `publishTime` that is a time at all is moved to an hour from now: the contract's
    `timestamp.gt_now` and `within` (stated in the field's description) are relative to the
    server's clock, which JSON Schema cannot state; what is not a time is left to be refused."""
    import datetime

    if context.operation.path != "/api/v1/statuses" or not isinstance(body, dict):
        return body
    written = body.get("publishTime")
    if not isinstance(written, str):
        return body
    try:
        datetime.datetime.fromisoformat(written.replace("Z", "+00:00"))
    except ValueError:
        return body
    soon = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(hours=1)
    return dict(body, publishTime=soon.strftime("%Y-%m-%dT%H:%M:%SZ"))
