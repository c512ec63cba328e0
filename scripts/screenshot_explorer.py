"""Screenshot the refinement explorer running in a real JupyterLab, in headless Chromium.

Proves the widget works outside Python: starts JupyterLab on localhost, opens notebooks/06_explore.ipynb, runs all
cells through JupyterLab's own command, waits for the widget and saves ``figures/explorer_jupyterlab.png``.
Needs Debian's ``chromium`` (``apt-get install chromium``) and ``pip install playwright`` (no browser download: it
drives /usr/bin/chromium). Run after a default-tier reproduction, which writes the trajectories the widget shows.
Usage: python scripts/screenshot_explorer.py [--out figures/explorer_jupyterlab.png]
"""
from __future__ import annotations

import argparse
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def free_port() -> int:
    """An unused localhost port."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> int:
    """Start JupyterLab, drive it with Playwright, save the screenshot."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=str(ROOT / "figures" / "explorer_jupyterlab.png"))
    ap.add_argument("--chromium", default="/usr/bin/chromium")
    ap.add_argument("--timeout", type=float, default=240.0)
    a = ap.parse_args()
    from playwright.sync_api import sync_playwright

    port = free_port()
    lab = subprocess.Popen([sys.executable, "-m", "jupyter", "lab", "--no-browser", f"--port={port}",
                            "--IdentityProvider.token=", "--ServerApp.password=", "--ServerApp.ip=127.0.0.1", "--allow-root",
                            "--LabApp.expose_app_in_browser=True", f"--ServerApp.root_dir={ROOT}"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 60
        while time.time() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.5)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=a.chromium, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(f"http://127.0.0.1:{port}/lab/tree/notebooks/06_explore.ipynb", timeout=a.timeout * 1000)
            page.wait_for_function("window.jupyterapp !== undefined", timeout=a.timeout * 1000)
            page.wait_for_selector(".jp-Notebook", timeout=a.timeout * 1000)
            page.wait_for_function(
                "(() => { const w = window.jupyterapp.shell.currentWidget;"
                " return w && w.sessionContext && w.sessionContext.session && w.sessionContext.session.kernel"
                " && w.sessionContext.session.kernel.status === 'idle'; })()", timeout=a.timeout * 1000)
            page.evaluate("window.jupyterapp.commands.execute('notebook:run-all-cells')")
            widget = page.wait_for_selector(".widget-vbox .widget-image", timeout=a.timeout * 1000)
            page.wait_for_timeout(3000)  # let the image and curve finish rendering
            widget.scroll_into_view_if_needed()
            box = page.query_selector(".widget-vbox")
            Path(a.out).parent.mkdir(parents=True, exist_ok=True)
            box.screenshot(path=a.out)
            browser.close()
    finally:
        lab.terminate()
        lab.wait(timeout=30)
    print(f"saved {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
