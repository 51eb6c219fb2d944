"""The OpenAPI page at /docs works offline: Swagger UI's files are served by the server from
the installed package, and the page names no other host."""

from __future__ import annotations

import re


def test_docs_reference_no_external_host(ui_server):
    c = ui_server.client()
    page = c.get("/docs")
    assert page.status_code == 200 and "SwaggerUIBundle" in page.text
    urls = re.findall(r"""(?:src|href|url)\s*[=:]\s*['"]([^'"]+)['"]""", page.text)
    assert urls, page.text
    assert not [u for u in urls if re.match(r"(?:[a-z]+:)?//", u)], urls  # relative URLs only
    assert "cdn" not in page.text.lower() and "https://" not in page.text
    assets = [u for u in urls if u.startswith("/docs/assets/")]
    assert {u.rsplit("/", 1)[1] for u in assets} == {
        "swagger-ui-bundle.js",
        "swagger-ui.css",
        "favicon-32x32.png",
    }
    for url in assets:
        r = c.get(url)
        assert r.status_code == 200 and len(r.content) > 500, url
    assert c.get("/docs/assets/x/index.html").status_code == 404  # only the files the page needs
    assert c.get("/openapi.json").json()["paths"]
    assert c.get("/redoc").status_code == 404  # ReDoc would need a CDN
