"""A Hugging Face hub on 127.0.0.1 for the tests: the few endpoints huggingface_hub calls to create a repository,
upload a folder and download files, answered by http.server in a thread, so that --push and fetching a repository
run the real client against a real server. A repository named `status-NNN` answers every request with status NNN."""
from __future__ import annotations

import base64
import hashlib
import http.server
import json
import re
import threading

_STATUS = re.compile(r"status-(\d{3})")
_RESOLVE = re.compile(r"^/([^/]+/[^/]+)/resolve/[^/]+/(.+)$")
_API = re.compile(r"^/api/models/([^/]+/[^/]+)/(preupload|commit)/")


class LocalHub:
    """Repositories held in memory: {"org/name": {path: bytes}}. Use as a context manager; `url` is the endpoint."""

    def __init__(self):
        self.repos: dict[str, dict[str, bytes]] = {}
        hub = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def do_HEAD(self):
                hub.answer(self, self.rfile.read(int(self.headers.get("Content-Length") or 0)))

            do_GET = do_POST = do_PUT = do_HEAD

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> LocalHub:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()

    def answer(self, request, body: bytes) -> None:
        if status := _STATUS.search(request.path + body.decode(errors="replace")):
            return send(request, int(status.group(1)), {"error": "as asked"}, {"X-Error-Code": "RepoNotFound"})
        if request.path == "/api/repos/create":
            fields = json.loads(body)
            repo = f"{fields['organization']}/{fields['name']}"
            self.repos.setdefault(repo, {})
            return send(request, 200, {"url": f"{self.url}/{repo}"})
        if request.path == "/api/validate-yaml":
            return send(request, 200, {})
        if match := _API.match(request.path):
            return self.upload(request, match.group(1), match.group(2), body)
        if match := _RESOLVE.match(request.path):
            return self.download(request, match.group(1), match.group(2))
        return send(request, 404, {"error": "not a route of this test hub"})

    def upload(self, request, repo: str, step: str, body: bytes) -> None:
        if step == "preupload":  # every file goes inline in the commit, base64 (no LFS)
            files = json.loads(body)["files"]
            return send(request, 200, {"files": [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False}
                                                 for f in files]})
        for line in body.decode().splitlines():
            item = json.loads(line)
            if item["key"] == "file":
                self.repos[repo][item["value"]["path"]] = base64.b64decode(item["value"]["content"])
        return send(request, 200, {"commitUrl": f"{self.url}/{repo}/commit/{'a' * 40}", "commitOid": "a" * 40})

    def download(self, request, repo: str, path: str) -> None:
        if repo not in self.repos or path not in self.repos[repo]:
            code = "EntryNotFound" if repo in self.repos else "RepoNotFound"
            return send(request, 404, {"error": code}, {"X-Error-Code": code})
        data = self.repos[repo][path]
        headers = {"X-Repo-Commit": "a" * 40, "ETag": f'"{hashlib.sha1(data).hexdigest()}"'}
        return send(request, 200, data, headers)


def send(request, status: int, payload, headers: dict | None = None) -> None:
    data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    request.send_response(status)
    for key, value in {"Content-Type": "application/json", "Content-Length": str(len(data)), **(headers or {})}.items():
        request.send_header(key, value)
    request.end_headers()
    if request.command != "HEAD":
        request.wfile.write(data)
