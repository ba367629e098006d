"""schemathesis hooks for test_openapi.py (SCHEMATHESIS_HOOKS)."""

import schemathesis
from hypothesis import strategies as st

# A page token is one the server issued (the document's `format: page-token`); a request of the
# run asks for the first page, the only one whose token it can know.
schemathesis.openapi.format("page-token", st.just(""))
