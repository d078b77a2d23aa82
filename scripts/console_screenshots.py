"""Screenshots of the console's main pages for docs/console.md, at 390 and 1280 px wide.

It starts nothing: point it at a running console (`make run`) and a login of a tenant that has
something to show (the demo tenant after a few instances, a deployment and a task):

    ORCHESTRIO_PASSWORD=... .venv/bin/python scripts/console_screenshots.py \\
        --base-url http://127.0.0.1:8000 --email demo@example.com [--out docs/console]

The password is read from ORCHESTRIO_PASSWORD (or asked for), never from the command line. It
drives Debian's Chromium (/usr/bin/chromium, or --chromium PATH) through Playwright, as the
browser tests do, and writes `<page>-<width>.png` into --out: the first screen's height times
--max-screens at most, recompressed (pngquant when it is on PATH, else zlib's best level), so
that the files stay small enough to commit. Pages it cannot find (no instance yet, a role
without the Alerts page) are skipped and said so.
"""

from __future__ import annotations

import argparse
import getpass
import os
import shutil
import struct
import subprocess
import sys
import zlib
from pathlib import Path
from urllib.parse import urljoin

# (file name, path, or where to find it: (list page, link selector) pairs, the first that lists
# one wins). The instance shown is a deployment's when there is one: its page shows more.
PAGES = [
    ("overview", "/"),
    ("instances", "/instances/"),
    ("instance", [("/deployments/", 'table a[href^="/instances/"]'), ("/instances/", '[data-testid="instances-table"] a[href^="/instances/"]')]),
    ("deployments", "/deployments/"),
    ("deployment", [("/deployments/", 'table a[href^="/deployments/"]')]),
    ("activity", "/activity"),
    ("billing", "/billing/"),
    ("alerts", "/billing/alerts"),
    ("tokens", "/tokens"),
    ("team", "/team"),
]
VIEWPORTS = {390: 844, 1280: 800}


def recompress(path: Path) -> None:
    """Make a PNG smaller without changing a pixel: pngquant if installed (lossy palette,
    visually the same for a UI), else the image data deflated again at zlib's best level."""
    if shutil.which("pngquant"):
        subprocess.run(["pngquant", "--force", "--skip-if-larger", "--strip", "--output", str(path), "--", str(path)], check=False)
        return
    data = path.read_bytes()
    signature, position, chunks, idat = data[:8], 8, [], b""
    while position < len(data):
        (length,) = struct.unpack(">I", data[position : position + 4])
        kind = data[position + 4 : position + 8]
        body = data[position + 8 : position + 8 + length]
        position += 12 + length
        if kind == b"IDAT":
            idat += body
            if not any(name == b"IDAT" for name, _ in chunks):
                chunks.append((b"IDAT", b""))  # where the image data goes
        elif kind in (b"IHDR", b"PLTE", b"tRNS", b"IEND"):
            chunks.append((kind, body))
    packed = zlib.compress(zlib.decompress(idat), 9)
    out = bytearray(signature)
    for kind, body in chunks:
        body = packed if kind == b"IDAT" else body
        out += struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)
    if len(out) < len(data):
        path.write_bytes(bytes(out))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base-url", required=True, help="the running console, e.g. http://127.0.0.1:8000")
    parser.add_argument("--email", required=True, help="a console login (its password: ORCHESTRIO_PASSWORD)")
    parser.add_argument("--out", default="docs/console", help="where the PNGs go (default: docs/console)")
    parser.add_argument("--widths", default="390,1280", help="viewport widths, comma-separated (default: 390,1280)")
    parser.add_argument("--max-screens", type=float, default=2.5, help="the tallest shot, in viewport heights (default: 2.5)")
    parser.add_argument("--chromium", default=shutil.which("chromium") or "/usr/bin/chromium")
    args = parser.parse_args(argv)
    password = os.environ.get("ORCHESTRIO_PASSWORD") or getpass.getpass(f"Password for {args.email}: ")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    widths = [int(width) for width in args.widths.split(",") if width.strip()]

    from playwright.sync_api import Error as PlaywrightError
    from playwright.sync_api import sync_playwright

    base = args.base_url.rstrip("/") + "/"
    written = 0
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=args.chromium, headless=True, args=["--no-sandbox", "--disable-gpu"])
        try:
            context = browser.new_context(viewport={"width": 1280, "height": 800}, device_scale_factor=1)
            page = context.new_page()
            page.set_default_timeout(15_000)
            page.goto(urljoin(base, "login"))
            page.get_by_label("Email").fill(args.email)
            page.get_by_label("Password").fill(password)
            page.get_by_role("button", name="Log in").click()
            page.wait_for_load_state("networkidle")
            if "/login" in page.url:
                print("login refused: check --email and ORCHESTRIO_PASSWORD", file=sys.stderr)
                return 1
            urls = {}
            for name, where in PAGES:
                if isinstance(where, str):
                    urls[name] = urljoin(base, where.lstrip("/"))
                    continue
                for list_path, selector in where:
                    page.goto(urljoin(base, list_path.lstrip("/")))
                    link = page.locator(selector).first
                    href = link.get_attribute("href") if link.count() else None
                    if href is not None:
                        urls[name] = urljoin(base, href.lstrip("/"))
                        break
                else:
                    print(f"skipped {name}: nothing listed on {' or '.join(path for path, _ in where)} yet")
            for width in widths:
                height = VIEWPORTS.get(width, 800)
                page.set_viewport_size({"width": width, "height": height})
                for name, url in urls.items():
                    response = page.goto(url)
                    if response is None or response.status >= 400:
                        print(f"skipped {name}: {url} answered {response.status if response else 'nothing'}")
                        continue
                    page.wait_for_load_state("networkidle")
                    full = page.evaluate("document.documentElement.scrollHeight")
                    clip = {"x": 0, "y": 0, "width": width, "height": min(full, int(height * args.max_screens))}
                    target = out / f"{name}-{width}.png"
                    page.screenshot(path=str(target), clip=clip, full_page=True, animations="disabled")
                    recompress(target)
                    written += 1
                    print(f"{target} ({target.stat().st_size // 1024} KiB)")
        except PlaywrightError as exc:
            print(f"the browser failed: {exc}", file=sys.stderr)
            return 1
        finally:
            browser.close()
    return 0 if written else 1


if __name__ == "__main__":
    sys.exit(main())
