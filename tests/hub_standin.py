"""A local stand-in for the Hugging Face Hub, for tests: a small HTTP server on 127.0.0.1 in a thread, reached
through HF_ENDPOINT, answering what huggingface_hub's hf_hub_download and snapshot_download ask:

    GET  /api/{models|datasets}/ORG/NAME[/revision/REV]      repository info (its commit: "sha")
    GET  /api/{models|datasets}/ORG/NAME/tree/REV[/PATH]     the file listing
    HEAD/GET /[datasets/]ORG/NAME/resolve/REV/FILE           a file, with X-Repo-Commit, ETag, Content-Length,
                                                             byte ranges (206) for resumed downloads
    HEAD/GET /files/PATH                                     plain files (the paper's split files)

with the Hub's error headers (X-Error-Code RepoNotFound / EntryNotFound / RevisionNotFound / GatedRepo) that
huggingface_hub turns into its exceptions. `requests` logs (method, path, Range) of every request; `cut_once`
makes the next GET of a path stop after some bytes, as a dropped connection does.
"""
from __future__ import annotations

import hashlib
import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlsplit

API = re.compile(r"^/api/(?P<type>models|datasets)/(?P<repo>[^/]+/[^/]+)(?:/revision/(?P<rev>[^/]+)|"
                 r"/tree/(?P<tree_rev>[^/]+)(?:/(?P<tree_path>.*))?)?$")
RESOLVE = re.compile(r"^/(?:(?P<type>datasets)/)?(?P<repo>[^/]+/[^/]+)/resolve/(?P<rev>[^/]+)/(?P<file>.+)$")


@dataclass
class Repo:
    files: dict[str, bytes]
    commit: str = ""
    gated: bool = False

    def __post_init__(self):
        if not self.commit:
            digest = hashlib.sha1(b"".join(sorted(self.files.values())) + b"|".join(sorted(map(str.encode, self.files))))
            self.commit = digest.hexdigest()


@dataclass
class StandInHub:
    repos: dict[tuple[str, str], Repo] = field(default_factory=dict)  # (models|datasets, ORG/NAME) -> Repo
    files: dict[str, bytes] = field(default_factory=dict)  # plain files under /files/
    requests: list[tuple[str, str, str | None]] = field(default_factory=list)
    cuts: dict[str, int] = field(default_factory=dict)
    url: str = ""

    def add_repo(self, repo_id: str, files: dict[str, bytes], repo_type: str = "model", **options) -> Repo:
        repo = Repo(dict(files), **options)
        self.repos[(f"{repo_type}s", repo_id)] = repo
        return repo

    def cut_once(self, path: str, after: int) -> None:
        """The next GET of `path` (a URL path) sends its headers and only `after` bytes, then closes."""
        self.cuts[path] = after

    def gets(self, suffix: str) -> list[str | None]:
        """The Range header of every GET whose path ends with `suffix` (None: the whole file)."""
        return [rng for method, path, rng in self.requests if method == "GET" and path.endswith(suffix)]


def _handler(hub: StandInHub):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):  # quiet
            pass

        def do_HEAD(self):
            self._answer(head=True)

        def do_GET(self):
            self._answer(head=False)

        def _answer(self, head: bool):
            path = unquote(urlsplit(self.path).path)
            hub.requests.append((self.command, path, self.headers.get("Range")))
            if path.startswith("/files/"):
                data = hub.files.get(path[len("/files/"):])
                if data is None:
                    return self._error(404, {})
                return self._send_bytes(path, data, head, {})
            if match := API.match(path):
                return self._api(match)
            if match := RESOLVE.match(path):
                return self._resolve(match, path, head)
            self._error(404, {})

        def _repo(self, repo_type: str, repo_id: str, rev: str | None) -> Repo | None:
            repo = hub.repos.get((repo_type, repo_id))
            if repo is None:
                self._error(404, {"X-Error-Code": "RepoNotFound"})
                return None
            if repo.gated and not self.headers.get("Authorization"):
                self._error(401, {"X-Error-Code": "GatedRepo"})
                return None
            if rev not in (None, "main", repo.commit):
                self._error(404, {"X-Error-Code": "RevisionNotFound"})
                return None
            return repo

        def _api(self, match):
            repo = self._repo(match["type"], match["repo"], match["rev"] or match["tree_rev"])
            if repo is None:
                return
            if match["tree_rev"] is None:
                body = {"id": match["repo"], "sha": repo.commit, "siblings": [{"rfilename": p} for p in repo.files]}
            else:
                prefix = (match["tree_path"] or "").strip("/")
                body = [{"type": "file", "path": p, "size": len(data), "oid": hashlib.sha1(data).hexdigest()}
                        for p, data in sorted(repo.files.items()) if not prefix or p.startswith(prefix + "/")]
            payload = json.dumps(body).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def _resolve(self, match, path: str, head: bool):
            repo = self._repo(match["type"] or "models", match["repo"], match["rev"])
            if repo is None:
                return
            data = repo.files.get(match["file"])
            if data is None:
                return self._error(404, {"X-Error-Code": "EntryNotFound", "X-Repo-Commit": repo.commit})
            headers = {"X-Repo-Commit": repo.commit, "ETag": f'"{hashlib.sha1(data).hexdigest()}"'}
            self._send_bytes(path, data, head, headers)

        def _send_bytes(self, path: str, data: bytes, head: bool, headers: dict):
            start = 0
            requested = self.headers.get("Range")
            if requested and (found := re.fullmatch(r"bytes=(\d+)-", requested)):
                start = int(found.group(1))
                if start >= len(data):
                    return self._error(416, {"Content-Range": f"bytes */{len(data)}"})
            body = data[start:]
            self.send_response(206 if start else 200)
            for key, value in headers.items():
                self.send_header(key, value)
            self.send_header("Accept-Ranges", "bytes")
            if start:
                self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if head:
                return
            cut = hub.cuts.pop(path, None) if self.command == "GET" else None
            if cut is not None:
                self.wfile.write(body[:cut])
                self.wfile.flush()
                self.close_connection = True
                return
            self.wfile.write(body)

        def _error(self, status: int, headers: dict):
            self.send_response(status)
            for key, value in headers.items():
                self.send_header(key, value)
            self.send_header("Content-Length", "0")
            self.end_headers()

    return Handler


def start(hub: StandInHub) -> tuple[StandInHub, ThreadingHTTPServer]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(hub))
    server.daemon_threads = True
    hub.url = f"http://127.0.0.1:{server.server_address[1]}"
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()
    return hub, server
