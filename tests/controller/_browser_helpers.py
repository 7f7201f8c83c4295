"""Headless Chromium (Debian `chromium`) for the tests of the controller's status page: load a
page, dump the DOM it rendered or take a screenshot, and read the DOM's rows."""

from __future__ import annotations

import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

CHROMIUM = shutil.which("chromium")


class Rows(HTMLParser):
    """Rows of the page's tables by their data-* attributes, and the text of the page."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[dict[str, str]] = []
        self.ids: set[str] = set()
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if "id" in a:
            self.ids.add(a["id"])
        if tag == "tr" and any(k.startswith("data-") for k in a):
            self.rows.append(a)

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def chromium(*args: str, profile: Path) -> subprocess.CompletedProcess[str]:
    assert CHROMIUM is not None
    return subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                           f"--user-data-dir={profile}", "--no-first-run", *args],
                          capture_output=True, text=True, timeout=120, check=False)
