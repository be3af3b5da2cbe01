"""A real HTTP server on 127.0.0.1 for download tests: ranges, validators, dropped connections, errors."""

from __future__ import annotations

import hashlib
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class FileServer:
    """Serves `files` (path -> bytes) with an ETag (answering a matching If-None-Match with 304). `drop_after[path]
    = n` cuts the next response to that path after n bytes; paths in `unsized` are sent without Content-Length (the
    end of the body is the end of the connection); paths in `no_ranges` ignore Range headers; paths in `no_etag` are
    sent with neither ETag nor Last-Modified."""

    def __init__(self):
        self.files: dict[str, bytes] = {}
        self.drop_after: dict[str, int] = {}
        self.status: dict[str, int] = {}
        self.unsized: set[str] = set()
        self.no_ranges: set[str] = set()
        self.no_etag: set[str] = set()
        self.requests: list[dict] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                server.requests.append({"path": self.path, **{k.lower(): v for k, v in self.headers.items()}})
                if self.path in server.status:
                    self.send_error(server.status[self.path])
                    return
                body = server.files.get(self.path)
                if body is None:
                    self.send_error(404)
                    return
                etag = '"' + hashlib.md5(body).hexdigest() + '"'
                if self.headers.get("If-None-Match") == etag and self.path not in server.no_etag:
                    self.send_response(304)
                    self.send_header("ETag", etag)
                    self.end_headers()
                    return
                start = 0
                ranged = self.headers.get("Range")
                if ranged and self.headers.get("If-Range") in (None, etag) and self.path not in server.no_ranges:
                    start = int(ranged.split("=")[1].split("-")[0])
                    if start >= len(body):
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{len(body)}")
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
                else:
                    self.send_response(200)
                if self.path not in server.unsized:
                    self.send_header("Content-Length", str(len(body) - start))
                if self.path not in server.no_etag:
                    self.send_header("ETag", etag)
                self.end_headers()
                cut = server.drop_after.pop(self.path, None)
                payload = body[start:] if cut is None else body[start : start + cut]
                self.wfile.write(payload)
                if cut is not None:
                    self.wfile.flush()
                    self.close_connection = True

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()
