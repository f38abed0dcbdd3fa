"""Drive the self-hosted Prefect UI in headless Chromium and read back what it shows.

For end-to-end tests that run after a demo flow: the API can say a run or an artifact exists,
but only the browser shows that the UI (a React app fed by the same API) renders it.

Targets the UI that prefect 3.8.8 serves by default, the React "v2" UI under ``/v2``
(``PREFECT_SERVER_UI_V2_ENABLED`` defaults to true; ``/`` redirects there). The legacy Vue UI
still answers every other path at the root, e.g. the ``/runs/flow-run/<id>`` links that
Prefect prints in its logs, so always navigate through this helper's ``/v2`` paths.

The server must run with ``PREFECT_UI_API_URL=http://<host>:<port>/api`` when the port is not
4200, or the UI loads but talks to :4200: v2 then shows "Unable to connect to Prefect server"
(v1: "Can't connect to Server API") and no data; the waits below fail early on those texts.

Needs Debian's ``chromium`` and ``chromium-driver`` (``.ci/install-chromium``). Selenium is
given both paths, so it never runs Selenium Manager (which would try to download a driver);
``SE_MANAGER_PATH`` is pointed at a missing file so that any call to it fails loudly instead.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"

# Offline and deterministic: no first-run UI, no updaters, sync, QUIC or background fetches.
CHROME_FLAGS = (
    "--headless",
    "--no-sandbox",  # CI runs as root
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1400,900",
)

# Texts the UIs show when they cannot reach their API (a setup error; waiting will not help).
CONNECTION_ERRORS = (
    "Can't connect to Server API",
    "Unable to connect to Prefect server",
    "Failed to connect to Prefect server",
)

# Collects the links of one kind on the page, each with the flow link of its own row (the
# closest ancestor that holds a /flows/flow/ link but no other link of this kind).
_LINKS_JS = """
const [part] = arguments, seen = new Set(), out = [];
for (const a of document.querySelectorAll(`a[href*="${part}"]`)) {
  const href = a.getAttribute("href");
  const text = a.innerText.trim();
  if (seen.has(href) || !text) continue;
  seen.add(href);
  let flow = null;
  for (let e = a.parentElement; e && e !== document.body; e = e.parentElement) {
    const mine = new Set([...e.querySelectorAll(`a[href*="${part}"]`)].map(x => x.getAttribute("href")));
    if (mine.size > 1) break;
    const f = e.querySelector('a[href*="/flows/flow/"]');
    if (f) { flow = f.innerText.trim(); break; }
  }
  out.push([href, text, flow]);
}
return out;
"""

# The artifact page's content, by type; tables as one tab-separated line per row (header
# first); the active tab panel as a fallback (link and image artifacts).
_ARTIFACT_JS = """
const table = document.querySelector('[data-testid=table-display] table');
if (table) {
  const rows = [...table.querySelectorAll('tr')].map(
    tr => [...tr.querySelectorAll('th, td')].map(c => c.innerText.trim()).join('\\t'));
  return rows.length > 1 ? rows.join('\\n') : null;
}
for (const sel of ['[data-testid=markdown-display]', '[data-testid=progress-display]',
                   '[role=tabpanel][data-state=active]']) {
  const e = document.querySelector(sel);
  const text = e && e.innerText.replace('Show Raw Data', '').trim();
  if (text) return text;
}
return null;
"""


@dataclass(frozen=True)
class RunLink:
    """A flow run as a list row shows it: its name, its flow's name and its id, taken from
    the row's links."""

    name: str
    flow: str | None
    id: str


class PrefectUI:
    """A headless Chromium on a Prefect server's UI; use as a context manager.

    ``base_url`` is the server root, e.g. ``http://127.0.0.1:4311``. Paths given to ``open``
    are relative to the UI (``/runs``, not ``/v2/runs``). Every read waits (polls) for the
    React app to render, up to ``timeout`` seconds, and fails with an AssertionError that
    names the URL and shows what the page said instead.
    """

    def __init__(self, base_url: str, *, timeout: float = 30.0):
        self.base_url = base_url.rstrip("/")
        self.ui_url = self.base_url + "/v2"  # the selectors below are the v2 UI's
        self.timeout = timeout
        self.driver = None
        self._profile: str | None = None

    def __enter__(self) -> PrefectUI:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service

        os.environ.setdefault("SE_AVOID_STATS", "true")
        os.environ.setdefault("SE_MANAGER_PATH", "/nonexistent/selenium-manager-is-disabled")
        for binary in (CHROMIUM, CHROMEDRIVER):
            if not os.access(binary, os.X_OK):
                raise RuntimeError(f"{binary} is missing; run .ci/install-chromium")
        options = webdriver.ChromeOptions()
        options.binary_location = CHROMIUM
        self._profile = tempfile.mkdtemp(prefix="prefect-ui-chrome-")  # fresh: no cookies, no UI choice
        for flag in (*CHROME_FLAGS, f"--user-data-dir={self._profile}"):
            options.add_argument(flag)
        try:
            self.driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        if self.driver is not None:
            self.driver.quit()
            self.driver = None
        if self._profile:
            shutil.rmtree(self._profile, ignore_errors=True)
            self._profile = None

    # --- generic -----------------------------------------------------------------------

    def open(self, path: str) -> None:
        """Load a UI page. Returns once the document loaded; the app renders later, so
        follow with a ``wait_for*``."""
        self.driver.get(self.ui_url + "/" + path.lstrip("/"))

    def text(self) -> str:
        """The page's rendered text (what a reader sees, not the HTML)."""
        return self.driver.execute_script("return document.body ? document.body.innerText : ''")

    def wait_until(self, check, what: str, timeout: float | None = None):
        """Poll ``check()`` until it returns something truthy and return that. Fails early
        when the UI keeps saying it cannot reach its API for 3 s (a server setup error, not
        slowness; the grace lets a momentary blip retry)."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        broken_since = None
        while True:
            result = check()
            if result:
                return result
            page = self.text()
            broken = next((e for e in CONNECTION_ERRORS if e in page), None)
            broken_since = (broken_since or time.monotonic()) if broken else None
            if (broken and time.monotonic() - broken_since > 3) or time.monotonic() > deadline:
                main = self.driver.execute_script("const m = document.querySelector('main'); return m && m.innerText")
                snippet = re.sub(r"\s+", " ", (page if broken else main) or page).strip()[:800]
                why = f"the UI says {broken!r} (is PREFECT_UI_API_URL set on the server?)" if broken else "timed out"
                raise AssertionError(f"{what}: {why}\n  url: {self.driver.current_url}\n  page: {snippet}")
            time.sleep(0.25)

    def wait_for_text(self, text: str, timeout: float | None = None) -> str:
        """Wait until the rendered page text contains ``text``; returns the page text."""
        return self.wait_until(lambda: (t := self.text()) and text in t and t, f"waiting for {text!r}", timeout)

    def screenshot(self, path: str | os.PathLike) -> Path:
        """Save a PNG of the viewport (1400x900), creating parent folders."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        self.driver.save_screenshot(str(path))
        return path

    def images(self) -> list[tuple[str, int]]:
        """(src, naturalWidth) of every <img>; naturalWidth 0 means it did not load."""
        return self.driver.execute_script(
            "return [...document.images].map(i => [i.getAttribute('src'), i.complete ? i.naturalWidth : 0])")

    def _links(self, part: str, expect: tuple[str, ...] = (), what: str = "",
               label=lambda link: link[1]) -> list[tuple[str, str, str | None]]:
        """Links whose href contains ``part`` as (href, text, flow). Waits until every name in
        ``expect`` is among their labels (``label(link)``, the link text by default),
        or (no ``expect``) until the list is non-empty and the same on two polls in a row:
        lists arrive from the API after the page shell has rendered."""
        last: list = []

        def check():
            nonlocal last
            links = self.driver.execute_script(_LINKS_JS, part)
            labels = {label(link) for link in links}
            ready = set(expect) <= labels if expect else (links and links == last)
            last = links
            return links if ready else None

        want = f"{list(expect)}" if expect else "a non-empty list"
        return self.wait_until(check, f"{what or part}: waiting for {want}")

    @staticmethod
    def _runs(links) -> list[RunLink]:
        return [RunLink(name=text, flow=flow, id=href.rstrip("/").split("/")[-1].split("?")[0])
                for href, text, flow in links]

    # --- runs --------------------------------------------------------------------------

    def flow_runs(self, expect: tuple[str, ...] = ()) -> list[RunLink]:
        """Rows of the Runs page (``/runs``: past 7 days, newest first, first 100 rows).
        ``expect`` lists flow-run names to wait for."""
        self.open("/runs")
        return self._runs(self._links("/runs/flow-run/", expect, "Runs page"))

    def flow_run_names(self, expect: tuple[str, ...] = ()) -> list[str]:
        """Just the run names of ``flow_runs``."""
        return [r.name for r in self.flow_runs(expect)]

    def open_flow_run(self, *, flow: str | None = None, name: str | None = None,
                      tab: str = "SubflowRuns") -> RunLink:
        """Find a flow run on the Runs page, by flow name and/or run name (newest match),
        and open its page on ``tab`` (Logs, TaskRuns, SubflowRuns, Artifacts, Details,
        Parameters). Flow runs get random names unless the flow sets ``flow_run_name``, so
        ``flow=`` is usually the way to find one. The page route needs the run's id
        (``/runs/flow-run/<id>``), which the row's link carries."""
        self.open("/runs")

        def find():
            rows = self._runs(self.driver.execute_script(_LINKS_JS, "/runs/flow-run/"))
            return next((r for r in rows if flow in (None, r.flow) and name in (None, r.name)), None)

        run = self.wait_until(find, f"Runs page: finding flow run flow={flow!r} name={name!r}")
        self.open(f"/runs/flow-run/{run.id}?tab={tab}")
        self.wait_for_text(run.name)
        return run

    def subflow_runs(self, expect_flows: tuple[str, ...] = ()) -> list[RunLink]:
        """Subflow runs of the open flow run (its Subflow Runs tab; first page of 10).
        ``expect_flows`` lists the subflows' *flow* names to wait for."""
        self._tab("SubflowRuns")
        links = self._links("/runs/flow-run/", expect_flows, "Subflow Runs tab", label=lambda link: link[2])
        return self._runs(links)

    def task_run_names(self, expect_tasks: tuple[str, ...] = ()) -> list[str]:
        """Names of the task runs on the open flow run's Task Runs tab: that run's own tasks,
        not its subflows'. Run names are ``<task name>-<3 hex>`` (``count_rows-0e2``), so
        ``expect_tasks`` takes task names."""
        self._tab("TaskRuns")
        task = lambda link: link[1].rsplit("-", 1)[0]  # noqa: E731
        return [text for _, text, _ in self._links("/runs/task-run/", expect_tasks, "Task Runs tab", task)]

    def _tab(self, tab: str) -> None:
        """Switch the open flow-run page to ``tab`` by URL (the tab state lives in ?tab=)."""
        url = self.driver.current_url.split("?")[0]
        if "/runs/flow-run/" not in url:
            raise AssertionError(f"not on a flow-run page: {self.driver.current_url}")
        self.driver.get(f"{url}?tab={tab}")

    # --- artifacts ---------------------------------------------------------------------

    def artifact_keys(self, expect: tuple[str, ...] = ()) -> list[str]:
        """Keys listed on the Artifacts page (``/artifacts``, one card per key). The v2
        sidebar has no Artifacts entry; the route exists all the same."""
        self.open("/artifacts")
        key = lambda link: link[0].rstrip("/").split("/")[-1]  # noqa: E731
        return [key(link) for link in self._links("/artifacts/key/", expect, "Artifacts page", key)]

    def open_artifact(self, key: str) -> str:
        """Open the newest version of a keyed artifact; returns ``artifact_text()``.
        ``/artifacts/key/<key>`` only shows a timeline of versions (newest first); the
        content lives on ``/artifacts/artifact/<id>``, so this follows the first card."""
        self.open(f"/artifacts/key/{quote(key)}")
        card = self.wait_until(
            lambda: self.driver.execute_script(
                "const c = document.querySelector('[data-testid^=\"timeline-card-\"]');"
                "return c && c.dataset.testid.slice('timeline-card-'.length)"),
            f"artifact {key!r}: waiting for its versions")
        self.open(f"/artifacts/artifact/{card}?tab=Artifact")
        return self.artifact_text()

    def artifact_text(self) -> str:
        """Rendered content of the open artifact page: the markdown as text; a table as
        "cell\\tcell" lines, header first (only the first page, 10 rows, is rendered); for an
        image artifact its "Image URL: ..." caption."""
        return self.wait_until(lambda: self.driver.execute_script(_ARTIFACT_JS), "waiting for the artifact's content")

    def wait_for_images(self, count: int = 1) -> list[tuple[str, int]]:
        """Wait until ``count`` <img> elements have loaded (naturalWidth > 0); returns
        ``images()``. A broken or blocked image keeps naturalWidth 0 and times out here."""
        return self.wait_until(lambda: (i := self.images()) and sum(w > 0 for _, w in i) >= count and i,
                               f"waiting for {count} loaded image(s)")
