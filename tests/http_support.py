"""A real HTTP server on 127.0.0.1 (http.server in a thread) serving one folder.

Shared by the download tests (`unet data fetch`, `unet models pull`, model_path by URL/ID):
``cut`` names URL paths whose transfer breaks mid-way (the full Content-Length is announced,
half the bytes are sent, then the connection closes), as an interrupted download does.
"""

from __future__ import annotations

import http.server
import threading
from pathlib import Path


class FileServer:
    """Serves ``folder``; counts the requests it answered; ``stop()`` is idempotent."""

    def __init__(self, folder: Path, cut: tuple[str, ...] = ()) -> None:
        self.folder = folder
        self.requests = 0
        self.paths: list[str] = []
        self.cut = set(cut)
        self.stopped = False
        outer = self

        class Handler(http.server.SimpleHTTPRequestHandler):
            def __init__(self, *args, **kwargs):
                super().__init__(*args, directory=str(folder), **kwargs)

            def do_GET(self):  # noqa: N802 (http.server's naming)
                outer.requests += 1
                outer.paths.append(self.path)
                if self.path in outer.cut:
                    data = (folder / self.path.lstrip("/")).read_bytes()
                    self.send_response(200)
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data[: len(data) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                super().do_GET()

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        """Stop serving (a test goes offline); the fixture calls it again at the end."""
        if self.stopped:
            return
        self.stopped = True
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join()
