"""The API's documentation page, `/api/v1/docs`: the served OpenAPI document as a page to read,
every operation with its scope, on a phone and a laptop, with no script of its own."""

import httpx
import pytest

from tests.e2e.conftest import Server
from tests.e2e.pages import assert_page_fits


@pytest.mark.slow
@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)
def test_the_docs_page_shows_every_operation_and_its_scope(server: Server, applied, tabs):
    document = httpx.get(f"{server.ready()}/api/v1/openapi.json").json()
    tab = tabs()
    page = tab.page
    page.goto(f"{server.url}/api/v1/docs")
    assert page.locator("h1").inner_text() == "Rally API, version 1"
    shown = page.locator("article.api-op")
    operations = [
        (method.upper(), path, spec["x-rally-scope"], spec["operationId"])
        for path, operations in document["paths"].items()
        for method, spec in operations.items()
    ]
    assert shown.count() == len(operations) > 20
    for method, path, scope, operation_id in operations:
        card = page.locator(f"article#{operation_id}")
        assert card.locator("h3").inner_text() == f"{method} {path}"
        assert f"Needs {scope}." in card.inner_text()
    page.click("a[href='#webhooks']")
    assert page.evaluate("location.hash") == "#webhooks"
    assert_page_fits(page, "api-docs")
    assert not [m for m in tab.console if "Content Security Policy" in m]
