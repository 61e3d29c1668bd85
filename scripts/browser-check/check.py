"""`make browser-check` (scripts/browser-check/run.sh starts the service): the
interactive documentation as an integrator meets it, in a real browser.

Headless Chromium (Debian's /usr/bin/chromium, driven by Playwright; no browser
download) opens /docs and this fails unless:
  1. Swagger UI renders, its assets and /openapi.json load, no script error;
  2. every operation of openapi/openapi.json is listed, and nothing else
     (METHOD path pairs, and each block's id carries its operationId);
  3. "Authorize" takes the bearer token;
  4. "Try it out" -> "Execute" on GET /v1/connections renders a 200 with an
     `items` body, and the shown curl carries the token.

--self-test then breaks the page in ways an integrator would notice (spec
missing an operation, the Swagger UI script not loading, /openapi.json
answering 500, "Try it out" switched off, a wrong token, a page that is not /docs) and fails when the check
passes any of them: a check that cannot fail proves nothing.

Env: CROSSLINK_URL (http://127.0.0.1:PORT), CROSSLINK_TOKEN (a viewer token).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from pathlib import Path

from playwright.sync_api import Browser, Error as PlaywrightError, Page, Route, sync_playwright

HTTP_METHODS = ("get", "put", "post", "delete", "patch", "head", "options", "trace")
# The operation the check runs from the page ("Try it out" -> "Execute").
TRY_METHOD, TRY_PATH = "get", "/v1/connections"
# As the machine notes say: without the background-networking flags Chromium
# keeps dialling Google's hosts, which this closed network refuses.
CHROMIUM_ARGS = [
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


class CheckFailed(Exception):
    pass


def operations(doc: dict) -> dict[tuple[str, str], dict]:
    """(METHOD, path) -> operation, for every operation of the document."""
    return {
        (method.upper(), path): op
        for path, item in doc["paths"].items()
        for method, op in item.items()
        if method in HTTP_METHODS
    }


def check_docs(
    browser: Browser,
    base: str,
    docs_path: str,
    token: str,
    doc: dict,
    timeout_ms: int,
    screenshot: Path,
    break_page=None,
) -> str:
    """Runs the whole check on a fresh page; raises CheckFailed saying what broke.
    `break_page(page)` (self-test only) installs routes that break the page."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    page.set_default_timeout(timeout_ms)
    problems: list[str] = []
    page.on("pageerror", lambda e: problems.append(f"script error: {e}"))
    page.on(
        "requestfailed",
        lambda r: problems.append(f"request failed: {r.method} {r.url} ({r.failure})"),
    )

    def on_response(r):
        path = r.url[len(base) :] if r.url.startswith(base) else None
        if path is not None and (path.startswith("/docs") or path == "/openapi.json") and r.status >= 400:
            problems.append(f"{r.request.method} {path} answered {r.status}")

    page.on("response", on_response)
    if break_page:
        break_page(page)

    def fail(msg: str):
        try:
            page.screenshot(path=str(screenshot), full_page=False)
        except (PlaywrightError, OSError):
            pass  # a screenshot is a help, the failure is the message
        extra = "".join(f"\n    {p}" for p in problems)
        raise CheckFailed(msg + extra)

    def need(cond: bool, msg: str):
        if not cond:
            fail(msg)

    def no_problems(what: str):
        need(not problems, f"{what}: the page had problems")

    step = f"opening {docs_path}"
    try:
        resp = page.goto(base + docs_path, wait_until="load")
        need(resp is not None and resp.status == 200, f"{docs_path} answered {resp.status if resp else 'nothing'}")
        no_problems(f"loading {docs_path}")

        # 1. Swagger UI rendered the document: its title, then the operation blocks.
        title = doc["info"]["title"]
        failed_load = page.get_by_text("Failed to load API definition")
        try:
            page.locator(".information-container .title").filter(has_text=title).or_(failed_load).first.wait_for()
            need(failed_load.count() == 0, "Swagger UI says: Failed to load API definition")
            page.locator(".opblock").first.wait_for()
        except PlaywrightError:
            fail(f"Swagger UI did not render the document (no title {title!r} or no operation)")
        no_problems("rendering")

        # 2. Every operation listed, nothing more.
        step = "listing the operations"
        want = operations(doc)
        try:
            page.wait_for_function(
                "n => document.querySelectorAll('.opblock').length >= n", arg=len(want), timeout=min(timeout_ms, 3000)
            )
        except PlaywrightError:
            pass  # reported below with the difference
        shown = page.eval_on_selector_all(
            ".opblock",
            """els => els.map(e => ({
                id: e.id,
                method: (e.querySelector('.opblock-summary-method') || {}).textContent,
                path: (e.querySelector('[data-path]') || {dataset: {}}).dataset.path,
            }))""",
        )
        got = {}
        for s in shown:
            key = ((s["method"] or "").strip().upper(), s["path"] or "")
            got.setdefault(key, []).append(s["id"])
        missing = sorted(set(want) - set(got))
        extra = sorted(set(got) - set(want))
        need(not missing, f"{len(missing)} of {len(want)} operations not listed: " + ", ".join(f"{m} {p}" for m, p in missing[:10]))
        need(not extra, "listed but not in openapi/openapi.json: " + ", ".join(f"{m} {p}" for m, p in extra[:10]))
        for key, op in want.items():
            ids = got[key]
            need(
                all(i.endswith("-" + op["operationId"]) for i in ids),
                f"{key[0]} {key[1]}: block ids {ids} do not carry operationId {op['operationId']}",
            )
        listed = len(shown)

        # 3. Authorize with the bearer token.
        step = "Authorize with the bearer token"
        page.locator(".scheme-container button.authorize").click()
        # The container by its heading: the value input goes once authorised.
        bearer = page.locator(".modal-ux .auth-container").filter(has=page.locator("h4", has_text="(http, Bearer)"))
        bearer.locator("#auth-bearer-value").fill(token)
        bearer.locator("button.authorize").click()
        try:
            bearer.get_by_role("button", name="Remove authorization").wait_for()
        except PlaywrightError:
            fail("Authorize did not take the bearer token")
        bearer.locator("button.btn-done").click()
        page.locator(".modal-ux").wait_for(state="detached")

        # 4. Try it out -> Execute on GET /v1/connections, a 200 rendered.
        op = want[(TRY_METHOD.upper(), TRY_PATH)]
        block = page.locator(f".opblock-{TRY_METHOD}").filter(
            has=page.locator(f'.opblock-summary-path[data-path="{TRY_PATH}"]')
        )
        need(block.count() == 1, f"{TRY_METHOD.upper()} {TRY_PATH} ({op['operationId']}) is listed {block.count()} times")
        step = f"expanding {TRY_METHOD.upper()} {TRY_PATH}"
        block.locator(".opblock-summary-control").click()
        block.locator(".opblock-body").wait_for()
        step = f'"Try it out" on {TRY_METHOD.upper()} {TRY_PATH}'
        # Rendered with the body: none there means it is switched off.
        need(block.locator("button.try-out__btn").count() == 1, f"{step}: no such button")
        block.locator("button.try-out__btn").click()
        step = f'"Execute" on {TRY_METHOD.upper()} {TRY_PATH}'
        block.locator("button.execute").click()
        status_cell = block.locator(".live-responses-table tbody .response-col_status")
        try:
            status_cell.wait_for()
        except PlaywrightError:
            fail(f"Execute on {TRY_METHOD.upper()} {TRY_PATH} rendered no server response")
        status = status_cell.inner_text().strip()
        body = block.locator(".live-responses-table tbody .response-col_description").inner_text()
        curl = block.locator(".curl-command").inner_text()
        need(status == "200", f"Execute on {TRY_METHOD.upper()} {TRY_PATH} rendered {status}, not 200:\n{body[:400]}")
        need('"items"' in body, f"the rendered 200 has no items: {body[:400]}")
        need(f"Authorization: Bearer {token}" in curl, "the rendered curl does not carry the token")
        no_problems("Try it out")
        return f"{listed} operations listed (= openapi/openapi.json), authorised, Execute on {TRY_METHOD.upper()} {TRY_PATH} rendered 200"
    except PlaywrightError as e:
        fail(f"{step} failed: {str(e).splitlines()[0]}")
        raise  # unreachable: fail raises
    finally:
        context.close()


def self_test(browser: Browser, base: str, token: str, doc: dict, shots: Path) -> list[str]:
    """Each broken page must fail the check, for its reason; returns the cases that did not."""
    spec = json.dumps(doc)

    def drop_one_operation(page: Page):
        # The last operation of the document, so the listing check (not the
        # Try-it-out step) is what must catch it.
        d = json.loads(spec)
        path = list(d["paths"])[-1]
        d["paths"].pop(path)
        page.route("**/openapi.json", lambda r: r.fulfill(status=200, content_type="application/json", body=json.dumps(d)))

    def no_bundle(page: Page):
        page.route("**/docs/swagger-ui-bundle.js", lambda r: r.abort())

    def no_try_it_out(page: Page):
        # The page renders and lists everything, but "Try it out" is off.
        def handle(route: Route):
            html = route.fetch().text()
            broken = html.replace("persistAuthorization: true", "persistAuthorization: true, supportedSubmitMethods: []")
            assert broken != html, "the /docs page changed: update this self-test"
            route.fulfill(status=200, content_type="text/html", body=broken)

        page.route("**/docs", handle)

    def spec_500(page: Page):
        page.route("**/openapi.json", lambda r: r.fulfill(status=500, body="boom"))

    # (name, page, token, breaker, what the failure must say: the check has to
    # fail for the reason the break causes, not for any reason)
    cases = [
        ("spec missing an operation", "/docs", token, drop_one_operation, r"operations not listed"),
        ("Swagger UI script not loading", "/docs", token, no_bundle, r"had problems|did not render"),
        ("/openapi.json answering 500", "/docs", token, spec_500, r"had problems|Failed to load API"),
        ("Try it out switched off", "/docs", token, no_try_it_out, r'^"Try it out" on'),
        ("a wrong token", "/docs", token[:-4] + "AAAA", None, r"rendered 401, not 200"),
        ("a page that is not /docs", "/docs/index.html", token, None, r"answered 404"),
    ]
    wrong = []
    for name, docs_path, tok, breaker, reason in cases:
        t = time.monotonic()
        try:
            check_docs(browser, base, docs_path, tok, doc, 10000, shots / "self-test.png", breaker)
            wrong.append(f"{name} (passed)")
            print(f"  self-test {name}: the check PASSED a broken page", file=sys.stderr)
        except CheckFailed as e:
            said = str(e).splitlines()[0]
            if re.search(reason, said):
                print(f"  self-test {name}: caught ({time.monotonic() - t:.1f}s): {said}")
            else:
                wrong.append(f"{name} (failed for another reason)")
                print(f"  self-test {name}: failed, but not with /{reason}/: {e}", file=sys.stderr)
    return wrong


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--chromium", default="/usr/bin/chromium")
    ap.add_argument("--docs-path", default="/docs")
    ap.add_argument("--openapi", default="openapi/openapi.json")
    ap.add_argument("--screenshots", default="target/browser-check")
    ap.add_argument("--timeout-ms", type=int, default=30000)
    ap.add_argument("--self-test", action="store_true")
    a = ap.parse_args()
    base = os.environ["CROSSLINK_URL"].rstrip("/")
    token = os.environ["CROSSLINK_TOKEN"]
    doc = json.loads(Path(a.openapi).read_text())
    shots = Path(a.screenshots)
    shots.mkdir(parents=True, exist_ok=True)

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=a.chromium, headless=True, args=CHROMIUM_ARGS)
        print(f"== {a.docs_path} in {browser.browser_type.name} {browser.version} ({a.chromium}) against {base}")
        t = time.monotonic()
        try:
            print("  " + check_docs(browser, base, a.docs_path, token, doc, a.timeout_ms, shots / "failure.png"))
        except CheckFailed as e:
            print(f"browser check FAILED: {e}", file=sys.stderr)
            return 1
        print(f"  ok ({time.monotonic() - t:.1f}s)")
        if a.self_test:
            print("== self-test: broken pages must fail the check")
            wrong = self_test(browser, base, token, doc, shots)
            if wrong:
                print(f"self-test FAILED: {', '.join(wrong)}", file=sys.stderr)
                return 1
        browser.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
