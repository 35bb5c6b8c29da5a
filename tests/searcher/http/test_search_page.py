"""The search page in a real headless Chromium (Debian's ``chromium`` and ``chromedriver``, driven by
Selenium) against a real server on loopback: a person types a query, reads the hits, moves between
them by keyboard, filters by metadata, gives a token; nothing is fetched from beyond loopback.

Screenshots at desktop and phone widths go to ``$ALBATROSS_SCREENSHOTS`` when set (``docs/`` holds
the ones made this way), else to the test's temporary folder.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import Select, WebDriverWait

from indexer.config import AppConfig, ServerConfig
from indexer.records import Document
from searcher.client import AlbatrossClient
from searcher.server import RunningServer
from tests.searcher.http.calls import call, http_server
from tests.searcher.serving import served_app

TOKEN = "page-token"
DOCUMENTS = [
    Document("strawberry", "Sweet fleshy red fruit with tiny seeds on its skin.", "strawberry",
             {"category": "food", "colour": "red"}),
    Document("apple", "Fruit with red or yellow or green skin and sweet to tart crisp flesh.", "apple",
             {"category": "food", "colour": "red"}),
    Document("owl", "Nocturnal bird of prey that hunts small mammals in the dark.", "owl",
             {"category": "animal", "colour": "brown"}),
    Document("kettle", "The kettle clicked off just as the rain started.", "kettle",
             {"category": "object", "colour": "steel"}),
    Document("tomato", "Red fruit of a garden plant, eaten raw in salads or cooked.", "tomato",
             {"category": "food", "colour": "red"}),
]  # fmt: skip


def _binary(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is not installed: `bash scripts/setup.sh --dev` (apt: chromium chromium-driver)")
    return found


@pytest.fixture(scope="module")
def browser() -> Iterator[webdriver.Chrome]:
    options = webdriver.ChromeOptions()
    options.binary_location = _binary("chromium")
    for flag in (
        "--headless=new",
        "--no-sandbox",  # CI runs as root
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--window-size=1280,900",
        # Chromium's own traffic (updates, sync, safe browsing) would leave loopback: none of it.
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-default-apps",
        "--disable-extensions",
        "--no-first-run",
        "--no-default-browser-check",
        "--safebrowsing-disable-auto-update",
    ):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"performance": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(executable_path=_binary("chromedriver")))
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


def _app(folder: Path, model: Path, **server: object) -> AppConfig:
    return served_app(folder, model, ServerConfig(poll_interval_s=0.05, **server))  # type: ignore[arg-type]


def _fill(running: RunningServer, token: str | None = None) -> None:
    with AlbatrossClient(running.target, timeout=60, token=token) as client:
        client.create_collection("fruit")
        client.create_collection("empty")
        client.upsert("fruit", DOCUMENTS)
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    for _ in range(500):
        stats = call("GET", f"{running.http_url}/v1/collections/fruit", headers=headers).json()["stats"]
        if int(stats["indexSequence"]) >= int(stats["lastSequence"]):
            return
    raise AssertionError("the index did not catch up")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, tiny_albert_dir: Path) -> Iterator[RunningServer]:
    with http_server(_app(tmp_path_factory.mktemp("page-data"), tiny_albert_dir)) as running:
        _fill(running)
        yield running


@pytest.fixture(scope="module")
def locked_server(tmp_path_factory: pytest.TempPathFactory, tiny_albert_dir: Path) -> Iterator[RunningServer]:
    with http_server(
        _app(tmp_path_factory.mktemp("locked-data"), tiny_albert_dir, auth_token=TOKEN)
    ) as running:
        _fill(running, TOKEN)
        yield running


def _wait(driver: webdriver.Chrome, seconds: float = 20) -> WebDriverWait:  # type: ignore[type-arg]
    return WebDriverWait(driver, seconds)


def _open(driver: webdriver.Chrome, url: str) -> None:
    driver.get_log("performance")  # drop what earlier tests fetched
    driver.get(url)
    _wait(driver).until(lambda d: Select(d.find_element(By.ID, "collection")).options)


def _search(driver: webdriver.Chrome, query: str, collection: str = "fruit") -> list[WebElement]:
    Select(driver.find_element(By.ID, "collection")).select_by_value(collection)
    box = driver.find_element(By.ID, "query")
    box.clear()
    box.send_keys(query, Keys.ENTER)
    _wait(driver).until(lambda d: "result" in d.find_element(By.ID, "status").text)
    return driver.find_elements(By.CSS_SELECTOR, "#hits .hit")


def _active_id(driver: webdriver.Chrome) -> str:
    return str(driver.execute_script("return document.activeElement.id || document.activeElement.className"))


def _fetched_urls(driver: webdriver.Chrome) -> list[str]:
    urls = []
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message["method"] == "Network.requestWillBeSent":
            urls.append(message["params"]["request"]["url"])
    return urls


def _screenshot(driver: webdriver.Chrome, name: str, fallback: Path) -> Path:
    folder = Path(os.environ.get("ALBATROSS_SCREENSHOTS", str(fallback)))
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    assert driver.save_screenshot(str(path))
    return path


# --- a person searching ---------------------------------------------------------------------------


def test_typing_a_query_shows_the_hits_the_api_returns(
    browser: webdriver.Chrome, server: RunningServer
) -> None:
    _open(browser, f"{server.http_url}/")
    assert _active_id(browser) == "query"  # ready to type at once
    hits = _search(browser, "sweet red fruit")
    expected = call(
        "POST", f"{server.http_url}/v1/collections/fruit/search", {"query": "sweet red fruit", "k": 10}
    )
    expected_titles = [hit["title"] for hit in expected.json()["hits"]]
    assert [h.find_element(By.CLASS_NAME, "hit-title").text for h in hits] == expected_titles
    assert hits[0].find_element(By.CLASS_NAME, "score").text == f"{expected.json()['hits'][0]['score']:.4f}"
    strawberry = hits[expected_titles.index("strawberry")]
    assert strawberry.find_element(By.CLASS_NAME, "meta").text.split("\n") == [
        "category: food",
        "colour: red",
    ]
    assert "strawberry · characters 0–" in strawberry.find_element(By.CLASS_NAME, "hit-id").text
    status = browser.find_element(By.ID, "status").text
    assert f"{len(hits)} results in" in status and "ms on the server" in status


def test_the_words_shared_with_the_query_are_marked(browser: webdriver.Chrome, server: RunningServer) -> None:
    _open(browser, f"{server.http_url}/")
    hits = _search(browser, "red fruit")
    marked = {m.text.lower() for hit in hits for m in hit.find_elements(By.TAG_NAME, "mark")}
    assert marked == {"red", "fruit"}
    owl = next(h for h in hits if h.find_element(By.CLASS_NAME, "hit-title").text == "owl")
    assert owl.find_elements(By.TAG_NAME, "mark") == []


def test_results_are_reached_and_left_by_keyboard(browser: webdriver.Chrome, server: RunningServer) -> None:
    _open(browser, f"{server.http_url}/")
    hits = _search(browser, "fruit")
    page = browser.find_element(By.TAG_NAME, "body")
    browser.find_element(By.ID, "query").send_keys(Keys.ARROW_DOWN)
    assert browser.switch_to.active_element == hits[0]
    browser.switch_to.active_element.send_keys(Keys.ARROW_DOWN)
    assert browser.switch_to.active_element == hits[1]
    browser.switch_to.active_element.send_keys("j")
    assert browser.switch_to.active_element == hits[2]
    browser.switch_to.active_element.send_keys("k")
    assert browser.switch_to.active_element == hits[1]
    browser.switch_to.active_element.send_keys(Keys.ESCAPE)
    assert _active_id(browser) == "query"
    hits[3].click()
    page.send_keys("/")
    assert _active_id(browser) == "query"


def test_the_form_is_walked_with_tab_in_reading_order(
    browser: webdriver.Chrome, server: RunningServer
) -> None:
    _open(browser, f"{server.http_url}/")
    order = []
    for _ in range(5):
        browser.switch_to.active_element.send_keys(Keys.TAB)
        order.append(_active_id(browser))
    assert order == ["go", "collection", "mode", "k", "add-filter"]


def test_a_metadata_filter_narrows_the_hits(browser: webdriver.Chrome, server: RunningServer) -> None:
    _open(browser, f"{server.http_url}/")
    browser.find_element(By.ID, "add-filter").click()
    field, value = browser.find_elements(By.CSS_SELECTOR, "#filter-rows input")
    field.send_keys("category")
    value.send_keys("food")
    hits = _search(browser, "something in the dark")
    assert {h.find_element(By.CLASS_NAME, "hit-title").text for h in hits} == {
        "strawberry",
        "apple",
        "tomato",
    }
    Select(browser.find_element(By.CSS_SELECTOR, "#filter-rows select")).select_by_value("oneOf")
    value.clear()
    value.send_keys("animal, object")
    hits = _search(browser, "fruit")
    assert {h.find_element(By.CLASS_NAME, "hit-title").text for h in hits} == {"owl", "kettle"}


def test_the_mode_select_offers_what_the_server_reports(
    browser: webdriver.Chrome, server: RunningServer
) -> None:
    _open(browser, f"{server.http_url}/")
    doc = call("GET", f"{server.http_url}/openapi.json").json()
    mode = doc["components"]["schemas"]["albatross.v1.SearchRequest"]["properties"].get("mode", {})
    offered = [v for v in mode.get("enum", []) if not v.endswith("_UNSPECIFIED")]
    options = Select(browser.find_element(By.ID, "mode")).options
    if offered:
        assert [o.get_attribute("value") for o in options] == offered
    else:
        assert [(o.text, o.get_attribute("value")) for o in options] == [("dense", "")]


def test_an_error_is_shown_in_words(browser: webdriver.Chrome, server: RunningServer) -> None:
    _open(browser, f"{server.http_url}/")
    k = browser.find_element(By.ID, "k")
    k.clear()
    k.send_keys("5000")
    browser.find_element(By.ID, "query").send_keys("fruit", Keys.ENTER)
    _wait(browser).until(lambda d: "k" in d.find_element(By.ID, "status").text)
    status = browser.find_element(By.ID, "status")
    assert "between 1 and 1000" in status.text and "error" in status.get_attribute("class")


def test_a_server_with_a_token_asks_for_it(browser: webdriver.Chrome, locked_server: RunningServer) -> None:
    browser.get(f"{locked_server.http_url}/")
    box = _wait(browser).until(ec.visibility_of_element_located((By.ID, "token-box")))
    assert "bearer token" in box.text.lower()
    token = browser.find_element(By.ID, "token")
    token.send_keys(TOKEN, Keys.TAB)
    _wait(browser).until(lambda d: Select(d.find_element(By.ID, "collection")).options)
    assert len(_search(browser, "owl")) == len(DOCUMENTS)
    browser.execute_script("sessionStorage.clear()")


def test_no_request_leaves_loopback(browser: webdriver.Chrome, server: RunningServer) -> None:
    _open(browser, f"{server.http_url}/?collection=fruit&q=owl&k=3")
    _wait(browser).until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#hits .hit")) == 3)
    browser.get(f"{server.http_url}/docs")
    _wait(browser).until(lambda d: d.find_elements(By.CSS_SELECTOR, ".op"))
    urls = _fetched_urls(browser)
    assert any(url.endswith("/search") for url in urls) and any(url.endswith("/openapi.json") for url in urls)
    assert [u for u in urls if not (u.startswith(str(server.http_url) + "/") or u.startswith("data:"))] == []


def test_the_docs_page_lists_every_route(browser: webdriver.Chrome, server: RunningServer) -> None:
    browser.get(f"{server.http_url}/docs")
    _wait(browser).until(lambda d: d.find_elements(By.CSS_SELECTOR, ".op h3"))
    headings = [h.text for h in browser.find_elements(By.CSS_SELECTOR, ".op h3")]
    doc = call("GET", f"{server.http_url}/openapi.json").json()
    for path, methods in doc["paths"].items():
        for method in methods:
            assert f"{method.upper()} {path}" in headings


# --- how it looks ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("width", "height", "name"), [(1280, 900, "desktop"), (390, 844, "phone")])
def test_the_page_fits_the_screen(
    browser: webdriver.Chrome, server: RunningServer, tmp_path: Path, width: int, height: int, name: str
) -> None:
    browser.set_window_size(width, height)
    try:
        _open(browser, f"{server.http_url}/?collection=fruit&q=sweet+red+fruit&k=4")
        _wait(browser).until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#hits .hit")) == 4)
        browser.find_element(By.ID, "add-filter").click()
        field, value = browser.find_elements(By.CSS_SELECTOR, "#filter-rows input")
        field.send_keys("category")
        value.send_keys("food", Keys.ENTER)
        _wait(browser).until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#hits .hit")) == 3)
        inner = browser.execute_script("return window.innerWidth")
        scroll = browser.execute_script("return document.documentElement.scrollWidth")
        assert scroll <= inner, f"the page scrolls sideways at {width}px ({scroll} > {inner})"
        path = _screenshot(browser, f"search-page-{name}.png", tmp_path)
        assert path.stat().st_size > 10_000
        browser.get(f"{server.http_url}/docs")
        _wait(browser).until(lambda d: d.find_elements(By.CSS_SELECTOR, ".op"))
        scroll = browser.execute_script("return document.documentElement.scrollWidth")
        assert scroll <= inner, f"the docs page scrolls sideways at {width}px ({scroll} > {inner})"
        _screenshot(browser, f"docs-page-{name}.png", tmp_path)
    finally:
        browser.set_window_size(1280, 900)
