"""Steady traffic through the balancer for the deployment test: redirects of known
links and creates, from several threads over keep-alive connections, counting every
response that is not the expected one and every connection error as a failure."""

import http.client
import json
import sys
import threading
import time
import urllib.parse

base, key, seconds, out = sys.argv[1], sys.argv[2], float(sys.argv[3]), sys.argv[4]
u = urllib.parse.urlsplit(base)
lock = threading.Lock()
result = {"ok": 0, "failed": 0, "redirects": 0, "creates": 0, "examples": []}


def conn():
    return http.client.HTTPConnection(u.hostname, u.port, timeout=10)


def request(c, method, path, body=None):
    headers = {"X-API-Key": key}
    if body is not None:
        headers["content-type"] = "application/json"
    c.request(method, path, body=body, headers=headers)
    r = c.getresponse()
    data = r.read()
    return r.status, r.getheader("location"), data


def record(ok, kind, detail):
    with lock:
        if ok:
            result["ok"] += 1
            result[kind] += 1
        else:
            result["failed"] += 1
            if len(result["examples"]) < 10:
                result["examples"].append(detail)


# A few links to redirect to, made before the restarts begin.
c = conn()
links = []
for i in range(20):
    status, _, data = request(c, "POST", "/api/v1/urls", json.dumps({"original_url": f"https://example.com/d/{i}"}))
    assert status == 201, (status, data)
    links.append((json.loads(data)["short_code"], f"https://example.com/d/{i}"))


def worker(n):
    c = conn()
    deadline = time.time() + seconds
    i = 0
    while time.time() < deadline:
        i += 1
        try:
            if i % 10 == 0:
                status, _, data = request(c, "POST", "/api/v1/urls", json.dumps({"original_url": f"https://example.com/w/{n}/{i}"}))
                record(status == 201, "creates", f"create -> {status} {data[:100]!r}")
            else:
                code, target = links[(n + i) % len(links)]
                status, location, _ = request(c, "GET", f"/{code}")
                record(status == 302 and location == target, "redirects", f"/{code} -> {status} {location}")
        except Exception as e:  # a dropped connection is a failed request
            record(False, "", f"{type(e).__name__}: {e}")
            c.close()
            c = conn()


threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
for t in threads:
    t.start()
for t in threads:
    t.join()
json.dump(result, open(out, "w"))
