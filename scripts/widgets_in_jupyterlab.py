"""Check in a real browser that a lab's widgets render and respond in JupyterLab.

Starts JupyterLab on a copy of a notebook (default: the solution view of lab 04), opens it in
headless Chromium through Playwright, runs every cell, waits for the ipywidgets sliders, moves
one of them and checks that the picture under it changes, saves screenshots, and fails if any
cell raised. Needs Chromium on the machine (`apt install chromium`) and `pip install
.[browser]`; it is not part of `make test` because CI machines have no browser.

    python scripts/widgets_in_jupyterlab.py [NOTEBOOK] [--out DIR] [--chromium PATH]
"""

import argparse
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import nbformat
from playwright.sync_api import Page, sync_playwright

DEFAULT_NOTEBOOK = Path("build/solution/04-elbo-estimators.ipynb")
RUN_TIMEOUT_MS = 15 * 60 * 1000  # the whole notebook, training included, on a slow CPU


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_jupyterlab(root: Path, port: int) -> subprocess.Popen:
    """JupyterLab without a token on localhost, with the app object exposed to scripts."""
    command = [
        str(Path(sys.executable).parent / "jupyter"), "lab", "--no-browser", "--allow-root",
        f"--port={port}", "--ip=127.0.0.1", f"--ServerApp.root_dir={root}",
        "--IdentityProvider.token=", "--ServerApp.password=",
        "--LabApp.expose_app_in_browser=True",
    ]  # fmt: skip
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(120):
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/api", timeout=1)
            return server
        except OSError:
            time.sleep(0.5)
    server.kill()
    raise SystemExit("JupyterLab did not start in 60 s")


def run_all_cells(page: Page, url: str) -> None:
    """Open the notebook, wait for its kernel, run every cell, wait until the kernel is idle."""
    page.goto(url)
    page.wait_for_function(
        "window.jupyterapp && window.jupyterapp.shell.currentWidget", timeout=120_000
    )
    page.wait_for_function(
        "window.jupyterapp.shell.currentWidget.sessionContext?.session?.kernel?.status === 'idle'",
        timeout=120_000,
    )
    page.evaluate("window.jupyterapp.commands.execute('notebook:run-all-cells')")
    page.wait_for_timeout(2000)
    page.wait_for_function(
        "window.jupyterapp.shell.currentWidget.sessionContext.session.kernel.status === 'idle'",
        timeout=RUN_TIMEOUT_MS,
        polling=1000,
    )
    page.evaluate("window.jupyterapp.commands.execute('docmanager:save')")
    page.wait_for_timeout(2000)


def widget_boxes(page: Page):
    """The interact widgets (controls plus output), in notebook order."""
    return page.locator(".widget-interact")


def image_under(box) -> str:
    """The src of the picture a widget shows (matplotlib's PNG as a data URL)."""
    return box.locator(".widget-output img").first.get_attribute("src", timeout=60_000)


def move_slider(page: Page, box, label: str) -> None:
    """Press the right arrow on the slider labelled `label`, as a user would."""
    slider = box.locator(".widget-slider", has=page.get_by_text(label, exact=True))
    slider.locator(".noUi-handle").first.focus()
    for _ in range(4):
        page.keyboard.press("ArrowRight")


def errors_in(notebook: Path) -> list[str]:
    """The errors the saved notebook's cells raised."""
    nb = nbformat.read(notebook, as_version=4)
    return [
        f"cell {i}: {o.ename}: {o.evalue}"
        for i, cell in enumerate(nb.cells)
        for o in cell.get("outputs", [])
        if o.output_type == "error"
    ]


def check(notebook: Path, out: Path, chromium: str) -> list[str]:
    """Run the notebook in JupyterLab; return the problems found (empty: the widgets work)."""
    out.mkdir(parents=True, exist_ok=True)
    root = Path(tempfile.mkdtemp(prefix="widgets-"))
    copy = root / notebook.name
    shutil.copyfile(notebook, copy)
    port = free_port()
    server = start_jupyterlab(root, port)
    problems = []
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            started = time.monotonic()
            run_all_cells(page, f"http://127.0.0.1:{port}/lab/tree/{copy.name}")
            print(f"ran every cell in JupyterLab in {time.monotonic() - started:.0f} s")
            boxes = widget_boxes(page)
            print(f"{boxes.count()} interactive widget(s) rendered")
            if boxes.count() == 0:
                problems.append("no ipywidgets interact rendered")
            for k in range(boxes.count()):
                box = boxes.nth(k)
                box.scroll_into_view_if_needed()
                before = image_under(box)
                box.screenshot(path=str(out / f"widget-{k + 1}-before.png"))
                label = "α" if box.get_by_text("α", exact=True).count() else "coordinate"
                move_slider(page, box, label)
                page.wait_for_timeout(3000)
                after = image_under(box)
                box.screenshot(path=str(out / f"widget-{k + 1}-after.png"))
                moved = "changed" if after != before else "did NOT change"
                print(f"widget {k + 1}: moved the {label!r} slider; the picture {moved}")
                if after == before:
                    problems.append(f"widget {k + 1}: moving {label!r} did not redraw")
            browser.close()
    finally:
        server.terminate()
        server.wait(timeout=30)
    problems += errors_in(copy)
    shutil.rmtree(root, ignore_errors=True)
    return problems


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebook", nargs="?", type=Path, default=DEFAULT_NOTEBOOK)
    parser.add_argument("--out", type=Path, default=Path("build/widgets"), help="screenshots")
    parser.add_argument("--chromium", default=shutil.which("chromium") or "chromium")
    args = parser.parse_args()
    problems = check(args.notebook, args.out, args.chromium)
    for problem in problems:
        print(f"PROBLEM: {problem}", file=sys.stderr)
    print(f"screenshots in {args.out}/")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
