"""A real browser renders /docs (Swagger UI) and /redoc from a real server, with every
host name but loopback unresolvable, and keeps a screenshot of each page.

Screenshots land in build/test-artifacts/ (git-ignored), for a person to look at.
"""

from __future__ import annotations

import json
import shutil
import struct
import subprocess
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.deploy.support import REPO, Served

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (.ci/run installs it)"),
]
ARTIFACTS = REPO / "build" / "test-artifacts"
# Only loopback resolves: a page that needs a CDN cannot load it and shows nothing.
OFFLINE = "MAP * ~NOTFOUND , EXCLUDE 127.0.0.1"
# ReDoc's bundle (fastapi_offline's redoc.standalone.js) hard-codes its "API docs by
# Redocly" footer logo as an <img> on a CDN; the docs pages' Content-Security-Policy
# (img-src 'self' data:) now stops the browser from even trying it. Pinned exactly, so
# that any new off-machine fetch fails the test.
OFF_MACHINE: dict[str, list[str]] = {"docs": [], "redoc": []}


@dataclass
class Rendered:
    """A page after its scripts ran: the DOM, a screenshot and what the page fetched."""

    dom: str
    screenshot: Path
    page_requests: list[str]


def page_requests(netlog: Path, origin: str) -> list[str]:
    """URLs the page itself asked for (Chromium's own update checks have no origin)."""
    log = json.loads(netlog.read_text())
    names = {number: name for name, number in log["constants"]["logEventTypes"].items()}
    return [
        event["params"]["url"]
        for event in log["events"]
        if names[event["type"]] == "URL_REQUEST_START_JOB"
        and (event.get("params") or {}).get("initiator") == origin
    ]


def render(served: Served, page: str, workdir: Path) -> Rendered:
    assert CHROMIUM is not None
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    screenshot = ARTIFACTS / f"{page}.png"
    screenshot.unlink(missing_ok=True)
    netlog = workdir / f"{page}.netlog.json"
    result = subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={workdir / f'profile-{page}'}",
            f"--host-resolver-rules={OFFLINE}",
            f"--log-net-log={netlog}",
            "--window-size=1280,2400",
            "--virtual-time-budget=10000",
            f"--screenshot={screenshot}",
            "--dump-dom",
            f"{served.url}/{page}",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return Rendered(result.stdout, screenshot, page_requests(netlog, served.url))


@pytest.fixture(scope="module")
def pages(served: Served, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Rendered]:
    """Both pages, rendered side by side."""
    workdir = tmp_path_factory.mktemp("chromium")
    with ThreadPoolExecutor(max_workers=2) as pool:
        rendered = pool.map(lambda page: render(served, page, workdir), ["docs", "redoc"])
        return dict(zip(["docs", "redoc"], rendered, strict=True))


@pytest.fixture(scope="module")
def openapi(served: Served) -> dict[str, Any]:
    schema: dict[str, Any] = httpx.get(f"{served.url}/openapi.json").json()
    return schema


class Elements(HTMLParser):
    """Attribute values of the elements that have `attribute`, and the text of <h2>s."""

    def __init__(self, attribute: str) -> None:
        super().__init__()
        self.attribute = attribute
        self.values: list[str] = []
        self.headings: list[str] = []
        self._heading: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if name == self.attribute and value is not None:
                self.values.append(value)
        if tag == "h2":
            self._heading = []

    def handle_endtag(self, tag: str) -> None:
        if tag == "h2" and self._heading is not None:
            self.headings.append("".join(self._heading).strip())
            self._heading = None

    def handle_data(self, data: str) -> None:
        if self._heading is not None:
            self._heading.append(data)


def parse(dom: str, attribute: str) -> Elements:
    elements = Elements(attribute)
    elements.feed(dom)
    return elements


def test_swagger_ui_renders_every_path_of_the_schema(
    pages: dict[str, Rendered], openapi: dict[str, Any]
) -> None:
    dom = pages["docs"].dom
    assert 'class="opblock opblock-post' in dom
    rendered = set(parse(dom, "data-path").values)
    assert {"/models/iris/predict", "/v1/models/{model}:predict", "/v2/models/{model}/infer"} <= (
        rendered
    )
    assert rendered == set(openapi["paths"])


def test_redoc_renders_every_operation_with_its_summary(
    pages: dict[str, Rendered], openapi: dict[str, Any]
) -> None:
    elements = parse(pages["redoc"].dom, "data-section-id")
    sections = {v.removeprefix("operation/") for v in elements.values if v.startswith("operation/")}
    operations = [op for path in openapi["paths"].values() for op in path.values()]
    assert sections == {op["operationId"] for op in operations}
    assert {op["summary"] for op in operations} <= set(elements.headings)
    assert "Predict with iris (the default version)" in elements.headings


@pytest.mark.parametrize("page", ["docs", "redoc"])
def test_pages_fetch_nothing_beyond_the_server(
    pages: dict[str, Rendered], served: Served, page: str
) -> None:
    fetched = pages[page].page_requests
    assert f"{served.url}/openapi.json" in fetched
    assert any(url.startswith(f"{served.url}/static-offline-docs/") for url in fetched)
    assert [url for url in fetched if not url.startswith(f"{served.url}/")] == OFF_MACHINE[page]


@pytest.mark.parametrize("page", ["docs", "redoc"])
def test_screenshot_is_kept_as_an_artifact(pages: dict[str, Rendered], page: str) -> None:
    png = pages[page].screenshot.read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", png[16:24])
    assert (width, height) == (1280, 2400)
    # a blank page compresses to a few kilobytes; a rendered one does not
    assert len(png) > 50_000
    assert pages[page].screenshot.is_relative_to(REPO / "build")
