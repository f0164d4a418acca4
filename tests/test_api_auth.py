"""The API behind a bearer token (CHURNGUARD_SERVE_TOKEN), on a real serve process and Redis.

Without the token: 401 with a JSON body and ``WWW-Authenticate: Bearer``; probes, metrics,
the OpenAPI document and the dashboard's files stay open; the dashboard takes the token once
from ``?token=`` and reads the API with it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from playwright.sync_api import Page, expect

from tests.serve_support import CUSTOMERS, serve_over_fixture
from tests.test_dashboard_browser import page  # noqa: F401  (the headless Chromium fixture)

pytestmark = pytest.mark.integration

TOKEN = "s3cret-token-for-the-tests"
SCORED = sum(1 for c in CUSTOMERS if c.health is not None)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A serve process with a token over the fixture read model."""
    with serve_over_fixture(
        tmp_path_factory.mktemp("auth"), {"CHURNGUARD_SERVE_TOKEN": TOKEN}
    ) as url:
        yield url


@pytest.mark.parametrize("path", ["/at-risk", "/alerts", "/customers/c-1", "/rules", "/tiers"])
@pytest.mark.parametrize("authorization", [None, "Bearer wrong-token-0123456789", TOKEN])
def test_data_needs_the_bearer_token(served: str, path: str, authorization: str | None) -> None:
    headers = {} if authorization is None else {"Authorization": authorization}
    response = requests.get(served + path, headers=headers, timeout=10)
    assert response.status_code == 401
    assert response.json()["error"] == "unauthorized"
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.parametrize("path", ["/at-risk", "/rules", "/customers/c-1"])
def test_the_right_token_gets_the_data(served: str, path: str) -> None:
    headers = {"Authorization": f"Bearer {TOKEN}"}
    response = requests.get(served + path, headers=headers, timeout=10)
    assert response.status_code in (200, 404), response.text
    assert response.status_code != 401


@pytest.mark.parametrize(
    "path", ["/healthz", "/readyz", "/metrics", "/openapi.json", "/", "/static/app.js"]
)
def test_probes_metrics_document_and_dashboard_files_stay_open(served: str, path: str) -> None:
    assert requests.get(served + path, timeout=10).status_code == 200


def test_a_short_token_stops_start_up_with_the_reason(tmp_path: Path) -> None:
    env = {**os.environ, "CHURNGUARD_SERVE_TOKEN": "short"}
    done = subprocess.run(
        [sys.executable, "-m", "agents", "serve", "--no-sink"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "serve_token" in done.stderr and "16" in done.stderr


def test_dashboard_reads_the_api_with_the_token_from_the_address(
    page: Page,  # noqa: F811
    served: str,
) -> None:
    page.goto(served + "/")
    expect(page.locator("#status")).to_contain_text("access token")
    page.goto(f"{served}/?token={TOKEN}")
    expect(page.locator("#at-risk tbody tr")).to_have_count(SCORED)
    assert "token" not in page.url  # dropped from the address bar
    page.reload()  # kept for the tab's session
    expect(page.locator("#at-risk tbody tr")).to_have_count(SCORED)
