"""The OpenAPI document against the running `churnguard serve` (schemathesis).

Schemathesis reads /openapi.json from a real serve process over a real Redis holding the
fixture read model, generates valid and invalid requests for every operation, and checks each
answer: never a server error, a status code and content type the document declares, a body
matching the declared schema, invalid input rejected with 4xx.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.specs.openapi.schemas import OpenApiSchema

from tests.serve_support import serve_over_fixture

pytestmark = pytest.mark.integration

EXAMPLES = 40


@pytest.fixture(scope="module")
def serve_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A serve process over the fixture read model."""
    with serve_over_fixture(tmp_path_factory.mktemp("openapi")) as url:
        yield url


@pytest.fixture(scope="module")
def api_schema(serve_url: str) -> OpenApiSchema:
    """The document the running server serves."""
    return schemathesis.openapi.from_url(f"{serve_url}/openapi.json")


WITH_PARAMETERS = [("GET", "/customers/{customer_id}"), ("GET", "/at-risk"), ("GET", "/alerts")]
WITHOUT_PARAMETERS = [("GET", "/tiers"), ("GET", "/rules"), ("GET", "/healthz"), ("GET", "/readyz")]
OPERATIONS = WITH_PARAMETERS + WITHOUT_PARAMETERS
CASES = [
    *((method, path, GenerationMode.POSITIVE) for method, path in OPERATIONS),
    # an operation without parameters has no invalid request to generate
    *((method, path, GenerationMode.NEGATIVE) for method, path in WITH_PARAMETERS),
]


def test_the_document_lists_exactly_the_tested_operations(api_schema: OpenApiSchema) -> None:
    listed = {(op.ok().method.upper(), op.ok().path) for op in api_schema.get_all_operations()}
    assert listed == set(OPERATIONS)


@pytest.mark.parametrize(("method", "path", "mode"), CASES)
def test_every_answer_matches_the_document(
    api_schema: OpenApiSchema, serve_url: str, method: str, path: str, mode: GenerationMode
) -> None:
    operation = api_schema[path][method]

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
    def answers_as_documented(case: schemathesis.Case) -> None:
        case.call_and_validate(base_url=serve_url)

    answers_as_documented()
