"""Picking a thumbnail in a tab's Results gallery: the browser's select event sends back the picked picture as the
gallery holds it — a FileData whose `path` is the studio's own `http://<host>/studio/files/<day>/<file>.png` URL.
That names one of the user's own results, and the gate lets it through; every other path (another user's result,
`..`, a path on the server, another host or scheme) is still refused before Gradio sees it."""

from __future__ import annotations

import uuid
from urllib.parse import urlsplit

import httpx
import pytest

from tests.server_support import USERS, basic_headers, http
from tests.ui_support import launch_studio, log_in

gradio_client = pytest.importorskip("gradio_client")

SMALL = dict(prompt="a lighthouse", negative_prompt="", steps=1, cfg_scale=7.0, seed=40, sampler_name="Euler",
             width=64, height=64, batch_size=2)


@pytest.fixture(scope="module")
def server(engine):
    with launch_studio(engine, users=USERS, admins=("alice",)) as server:
        yield server


def select_event(api: httpx.Client, tab: str) -> tuple[int, int]:
    """(fn_index, gallery id) of the tab's Results gallery's select event, as the page's config names them."""
    config = api.get("/config").json()
    [gallery] = [c["id"] for c in config["components"] if c.get("props", {}).get("elem_id") == f"{tab}-gallery"]
    [fn_index] = [d["id"] for d in config["dependencies"] if [gallery, "select"] in [list(t) for t in d["targets"]]]
    return fn_index, gallery


def picked(url: str, caption: str = "seed") -> dict:
    """What Gradio's gallery sends as the select event's data for a thumbnail showing `url`."""
    name = url.rsplit("/", 1)[-1]
    return {"index": None, "value": {"image": {"path": url, "url": url, "size": None, "orig_name": name, "mime_type": "image/png",
                                               "is_stream": False, "meta": {"_type": "gradio.FileData"}}, "caption": caption}}


def select(api: httpx.Client, session: str, fn_index: int, gallery: int, index: int, url: str,
           route: str = "/gradio_api/run/predict") -> httpx.Response:
    event = picked(url)
    event["index"] = index
    body = {"data": [None], "event_data": event, "fn_index": fn_index, "trigger_id": gallery, "session_hash": session}
    return api.post(route, json=body)


@pytest.fixture(scope="module")
def alices_results(server):
    """alice's browser session after one Generate of two pictures: (session id, [(URL, infotext)] in gallery order)."""
    alice = gradio_client.Client(server.url + "/", headers=basic_headers("alice"), verbose=False)
    result = alice.predict(api_name="/txt2img", **SMALL)
    assert len(result[2]) == 2
    with http(server, "alice") as api:
        items = api.get("/studio/api/history", params={"limit": 2}).json()["items"]
    by_seed = {item["seed"]: item for item in items}
    shown = [by_seed[SMALL["seed"]], by_seed[SMALL["seed"] + 1]]  # the gallery shows the batch in seed order
    assert shown[0]["infotext"] != shown[1]["infotext"]
    return alice.session_hash, [(server.url + item["url"], item["infotext"]) for item in shown]


def test_selecting_another_of_your_own_results_works(server, alices_results):
    session, shown = alices_results
    with http(server, "alice") as alice:
        fn_index, gallery = select_event(alice, "txt2img")
        for index in (1, 0):
            url, infotext = shown[index]
            response = select(alice, session, fn_index, gallery, index, url)
            assert response.status_code == 200, response.text
            assert response.json()["data"] == [infotext]  # the handler got the right index
        # the same through the queue (a select wired with queue=True goes there)
        url, _ = shown[1]
        assert select(alice, session, fn_index, gallery, 1, url, "/gradio_api/queue/join").status_code == 200


def test_another_users_result_in_a_select_is_refused(server, engine, alices_results):
    _session, shown = alices_results
    url, _ = shown[1]
    relative = urlsplit(url).path.removeprefix("/studio/files/")
    host = urlsplit(server.url).netloc
    with http(server, "bob") as bob:
        fn_index, gallery = select_event(bob, "txt2img")
        bobs_session = uuid.uuid4().hex
        for target in (url,  # alice's result by its URL, in bob's request: looked up among bob's outputs only
                       f"http://{host}/studio/files/../alice/{relative}",
                       f"http://{host}/studio/files/%2e%2e/alice/{relative}",
                       str(engine.outputs.owner_root("alice") / relative)):
            for route in ("/gradio_api/run/predict", "/gradio_api/queue/join"):
                response = select(bob, bobs_session, fn_index, gallery, 0, target, route)
                assert response.status_code == 400, (target, route, response.status_code)
                assert target not in response.text


def test_anything_but_the_studio_url_of_your_own_result_is_refused(server, engine, alices_results):
    """alice owns the picture: each of these names it (or a file beside it) some other way, and is refused."""
    session, shown = alices_results
    url, _ = shown[1]
    relative = urlsplit(url).path.removeprefix("/studio/files/")
    own_file = str(engine.outputs.owner_root("alice") / relative)
    day, name = relative.split("/")
    host = urlsplit(server.url).netloc
    refused = [
        f"http://{host}/studio/files/{day}/../{day}/{name}",
        f"http://{host}/studio/files/{day}/./{name}",
        f"http://{host}/studio/files/{relative}/../../../../etc/passwd",
        "/etc/passwd",
        own_file,  # an absolute path on the server, even of her own picture
        f"/studio/files/{relative}",
        f"../../{relative}",
        relative,
        f"http://example.com/studio/files/{relative}",  # another host
        f"http://{host}.example.com/studio/files/{relative}",
        f"http://user@{host}/studio/files/{relative}",
        f"https://{host.split(':')[0]}:1/studio/files/{relative}",
        f"file://{own_file}",
        f"ftp://{host}/studio/files/{relative}",
        f"http://{host}/gradio_api/file={own_file}",
        f"http://{host}/studio/files/{relative}?x=1",
        f"http://{host}/studio/files/{relative}#x",
        f"http://{host}//studio/files/{relative}",
    ]
    with http(server, "alice") as alice:
        fn_index, gallery = select_event(alice, "txt2img")
        for target in refused:
            for route in ("/gradio_api/run/predict", "/gradio_api/queue/join"):
                response = select(alice, session, fn_index, gallery, 1, target, route)
                assert response.status_code == 400, (target, route, response.status_code)
        # her result's URL is good in a select's data only: as an input's value it still has to be an upload
        body = {"data": [{"path": url, "meta": {"_type": "gradio.FileData"}}], "event_data": None, "fn_index": fn_index,
                "trigger_id": gallery, "session_hash": session}
        for route in ("/gradio_api/run/predict", "/gradio_api/queue/join"):
            assert alice.post(route, json=body).status_code == 400
        assert select(alice, session, fn_index, gallery, 1, url).status_code == 200  # and the real one still works


CHROMIUM = "/usr/bin/chromium"


@pytest.mark.skipif(not __import__("os").path.exists(CHROMIUM), reason=f"{CHROMIUM} is missing")
def test_clicking_another_thumbnail_in_the_browser(server):
    """The reported bug, as the user met it: Debian's chromium, a batch of two, a click on the other thumbnail."""
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu", "--no-first-run"])
        try:
            page = browser.new_context(viewport={"width": 1440, "height": 900}).new_page()
            log_in(page, server.url, "carol", USERS["carol"])
            page.fill("#txt2img-prompt textarea", "a lighthouse")
            for name, value in (("steps", 1), ("width", 64), ("height", 64), ("batch-size", 2)):
                box = page.locator(f"#txt2img-{name} input[type=number]")
                box.fill(str(value))
                box.press("Enter")
            page.locator("#txt2img-seed input").fill("70")
            page.click("#txt2img-generate")
            page.wait_for_selector("#txt2img-progress .studio-progress-done", timeout=120_000)
            page.wait_for_function("() => /Seed: 70\\b/.test(document.querySelector('#txt2img-infotext textarea').value)")
            answers = []
            page.on("response", lambda r: answers.append((r.url, r.status)) if "/gradio_api/" in r.url and r.request.method == "POST" else None)
            page.locator("#txt2img-gallery button.thumbnail-small[aria-label='Thumbnail 2 of 2']").click()
            page.wait_for_function("() => /Seed: 71\\b/.test(document.querySelector('#txt2img-infotext textarea').value)",
                                   timeout=15_000)
            assert answers and all(status == 200 for _url, status in answers), answers
        finally:
            browser.close()
