"""Screenshots of the built site as a browser shows it: the home page, the API reference of
``Network`` and the chapter-3 guide, by headless Chromium from a server on 127.0.0.1.

    mkdocs build --strict --site-dir /tmp/site
    python docs/screenshots/take.py /tmp/site            # writes the PNGs beside this script
    python docs/screenshots/take.py /tmp/site --out DIR

Needs Chromium (``apt-get install chromium``) and Pillow (with matplotlib, extra ``plot``); each
picture is reduced to a 256-colour palette to stay small.
"""

from __future__ import annotations

import argparse
import functools
import shutil
import subprocess
import tempfile
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

HERE = Path(__file__).resolve().parent
PAGES = {"home.png": "", "network-reference.png": "reference/network/",
         "chapter3-guide.png": "guide/chapter3/"}
WINDOW = "1200,1700"


class QuietHandler(SimpleHTTPRequestHandler):
    """Serves the site without a log line per request."""

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 (the base's name)
        pass


def browser() -> str:
    """The Chromium command on this machine."""
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if shutil.which(name):
            return name
    raise SystemExit("no Chromium found: apt-get install chromium")


def shoot(url: str, out: Path) -> None:
    """One screenshot of ``url``, as a small palette PNG at ``out``."""
    from PIL import Image

    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "raw.png"
        subprocess.run([browser(), "--headless", "--no-sandbox", "--disable-gpu",
                        "--hide-scrollbars", f"--window-size={WINDOW}",
                        f"--screenshot={raw}", url],
                       check=True, capture_output=True, timeout=120)
        image = Image.open(raw).convert("RGB")
        image.quantize(colors=256, method=Image.Quantize.FASTOCTREE).save(out, optimize=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("site", type=Path, help="the folder mkdocs built")
    parser.add_argument("--out", type=Path, default=HERE, help="where the PNGs go")
    args = parser.parse_args(argv)
    if not (args.site / "index.html").is_file():
        parser.error(f"{args.site} holds no index.html: build the site first "
                     "(mkdocs build --site-dir DIR)")
    handler = functools.partial(QuietHandler, directory=str(args.site))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        args.out.mkdir(parents=True, exist_ok=True)
        for name, page in PAGES.items():
            shoot(f"http://127.0.0.1:{server.server_port}/{page}", args.out / name)
            print(f"wrote {args.out / name}")
    finally:
        server.shutdown()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
