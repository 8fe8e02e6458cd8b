"""Driver of live_test.sh (which starts PostgreSQL + replica and Redis and exports
KURZ_TEST_PG, KURZ_TEST_PG_REPLICA, KURZ_TEST_REDIS, SERVICES_TMP, SERVICES_PGBIN and
KURZ_BIN). Everything here binds 127.0.0.1 on free ports and is stopped by PID.

1. Starts two kurz instances (after `kurz migrate`), a webhook receiver (the pager and
   the chat), Alertmanager with alertmanager.yml.tmpl rendered for it, and Prometheus
   (scrape and rule evaluation every second) with a copy of rules/kurz.rules.yml whose
   `for:` durations are shortened to max(5 s, for/30): 2m → 5s, 5m → 10s, 10m → 20s,
   15m → 30s. Everything else in the rules is unchanged.
2. Drives ~30 s of traffic on both instances (creates, redirects with countries, 404s,
   stats reads, rate-limited anonymous creates, failed authentication, health) and
   checks every answer; then checks no alert fires on this healthy traffic.
3. Evaluates every expression of every dashboard panel, the dashboards' variable query
   and every recording and alerting rule through /api/v1/query: any error fails. The
   core panels (request rate, redirect p99, error ratio, L1 hit ratio, clicks written)
   must return data. Expressions without data are listed (metrics not implemented yet).
4. Stops PostgreSQL (primary and replica) under traffic and waits until Alertmanager has
   delivered KurzStoreUnavailable and KurzHighErrorRate to the pager and a warning to
   the chat, checks that nothing was routed to the wrong receiver and that KurzErrorRate
   (the warning twin of KurzHighErrorRate) is inhibited; then restarts PostgreSQL and
   checks both instances recover.
5. Lists the catalog metrics (README.md) that /metrics did not have; with
   MONITORING_STRICT=1 any of them fails the test.
"""

import http.client
import http.server
import json
import math
import os
import pathlib
import random
import re
import signal
import socket
import string
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request

import yaml

HERE = pathlib.Path(__file__).resolve().parent
TMP = pathlib.Path(os.environ["SERVICES_TMP"]) / "monitoring"
KURZ = os.environ["KURZ_BIN"]
STRICT = os.environ.get("MONITORING_STRICT") == "1"
ADMIN_KEY = "kurz_" + "".join(random.choices(string.ascii_letters + string.digits, k=32))
COUNTRIES = ["US", "DE", "FR", "JP", "BR", "IN", "GB", "NG"]
UA = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36"

# (dashboard uid, panel title, must be > 0): the panels that must show data.
CORE_PANELS = [
    ("kurz-overview", "Requests/s", True),
    ("kurz-overview", "Redirect p99", False),
    ("kurz-overview", "5xx ratio", False),
    ("kurz-cache", "L1 hit ratio", False),
    ("kurz-clicks", "Clicks written/s", True),
]

failures: list[str] = []
procs: list[tuple[str, subprocess.Popen]] = []


def log(msg: str) -> None:
    print(f"== {msg}", file=sys.stderr, flush=True)


def fail(msg: str) -> None:
    print(f"FAIL: {msg}", file=sys.stderr, flush=True)
    failures.append(msg)


def free_ports(n: int) -> list[int]:
    """`n` distinct free ports. All `n` sockets stay bound until every port is picked:
    picked one at a time, the kernel may hand the same port out again once its socket
    is closed (a CI run once gave Prometheus the port a kurz already listened on)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            socks.append(s)
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def start(name: str, argv: list[str], env: dict | None = None) -> subprocess.Popen:
    out = open(TMP / f"{name}.log", "ab")
    p = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})},
                         start_new_session=True)
    procs.append((name, p))
    return p


def stop(p: subprocess.Popen) -> None:
    if p.poll() is None:
        p.terminate()
        try:
            p.wait(15)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def tail(name: str, n: int = 15) -> str:
    try:
        return "\n".join((TMP / f"{name}.log").read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return ""


def get(url: str, timeout: float = 5) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()
    except OSError:
        return 0, b""


def wait_ok(url: str, seconds: float, name: str) -> None:
    deadline = time.time() + seconds
    while time.time() < deadline:
        if get(url, 2)[0] == 200:
            return
        time.sleep(0.2)
    raise RuntimeError(f"{name} did not answer 200 on {url} within {seconds}s:\n{tail(name)}")


def pg_ctl(*args: str) -> None:
    argv = [os.path.join(os.environ["SERVICES_PGBIN"], "pg_ctl"), *args]
    if os.getuid() == 0:
        argv = ["runuser", "-u", "postgres", "--", *argv]
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL)


# ---------------------------------------------------------------- webhook receiver

class Receiver:
    """The pager and the chat: records every Alertmanager notification by path."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.got: list[tuple[str, dict]] = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 (http.server's name)
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with outer.lock:
                    outer.got.append((self.path, json.loads(body)))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def alerts(self, path: str, status: str = "firing") -> list[dict]:
        with self.lock:
            return [a for p, n in self.got if p == path for a in n["alerts"] if a["status"] == status]


# ---------------------------------------------------------------- kurz traffic

class Client:
    """One keep-alive connection to one instance."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.conn = None

    def request(self, method: str, path: str, body=None, headers=None) -> tuple[int, bytes]:
        headers = dict(headers or {})
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        for attempt in (1, 2):
            try:
                if self.conn is None:
                    self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=15)
                self.conn.request(method, path, body=data, headers=headers)
                r = self.conn.getresponse()
                return r.status, r.read()
            except (OSError, http.client.HTTPException):
                self.conn = None
                if attempt == 2:
                    return 0, b""
        return 0, b""


def admin(extra=None) -> dict:
    return {"X-API-Key": ADMIN_KEY, **(extra or {})}


def visitor() -> dict:
    return {"User-Agent": UA, "CF-IPCountry": random.choice(COUNTRIES),
            "X-Forwarded-For": f"203.0.113.{random.randint(1, 254)}"}


def create(c: Client, headers=None) -> tuple[int, str | None]:
    status, body = c.request("POST", "/api/v1/urls",
                             {"original_url": f"https://example.com/{random.randint(0, 10**9)}"}, headers)
    code = json.loads(body).get("short_code") if status == 201 else None
    return status, code


def drive(ports: list[int], codes: list[str], seconds: float, healthy: bool, tally: dict, stop_event=None) -> None:
    """Four workers, about 10 requests/s each, on both instances. Healthy: every answer
    is checked; broken: answers are only counted."""
    lock = threading.Lock()
    expect = {
        "redirect": {302}, "notfound": {404}, "stats": {200}, "info": {200}, "create": {201},
        "anon_create": {201, 429}, "bad_key": {401, 429}, "health": {200},
    }
    weights = [("redirect", 70), ("notfound", 1), ("stats", 8), ("info", 3), ("create", 6),
               ("anon_create", 5), ("bad_key", 3), ("health", 4)]
    ops = [o for o, w in weights for _ in range(w)]

    def worker(n: int) -> None:
        clients = [Client(p) for p in ports]
        deadline = time.time() + seconds
        i = n
        while time.time() < deadline and not (stop_event and stop_event.is_set()):
            c = clients[i % len(clients)]
            i += 1
            op = random.choice(ops)
            code = random.choice(codes)
            if op == "redirect":
                status, _ = c.request("GET", f"/{code}", headers=visitor())
            elif op == "notfound":
                status, _ = c.request("GET", "/zz" + "".join(random.choices(string.ascii_letters, k=5)),
                                      headers=visitor())
            elif op == "stats":
                status, _ = c.request("GET", f"/api/v1/urls/{code}/stats", headers=admin())
            elif op == "info":
                status, _ = c.request("GET", f"/api/v1/urls/{code}", headers=admin())
            elif op == "create":
                status, _ = create(c, admin())
            elif op == "anon_create":
                status, _ = create(c, {"X-Forwarded-For": "198.51.100.7"})
            elif op == "bad_key":
                status, _ = c.request("GET", "/api/v1/urls", headers={"X-API-Key": "kurz_not_a_key",
                                                                     "X-Forwarded-For": "198.51.100.9"})
            else:
                status, _ = c.request("GET", "/health")
            with lock:
                key = (op, status)
                tally[key] = tally.get(key, 0) + 1
            time.sleep(0.1)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if healthy:
        for (op, status), n in sorted(tally.items()):
            if status not in expect[op]:
                fail(f"healthy traffic: {n} × {op} answered {status} (expected {sorted(expect[op])})")


# ---------------------------------------------------------------- Prometheus API

class Prom:
    def __init__(self, port: int) -> None:
        self.base = f"http://127.0.0.1:{port}"

    def query(self, expr: str) -> dict:
        data = urllib.parse.urlencode({"query": expr}).encode()
        try:
            with urllib.request.urlopen(f"{self.base}/api/v1/query", data=data, timeout=20) as r:
                return json.loads(r.read())
        except urllib.error.HTTPError as e:
            return json.loads(e.read() or b'{"status":"error","error":"HTTP %d"}' % e.code)

    def api(self, path: str) -> dict:
        status, body = get(f"{self.base}{path}", 10)
        if status != 200:
            raise RuntimeError(f"Prometheus {path}: HTTP {status}")
        return json.loads(body)["data"]


def samples(result: dict) -> list[float]:
    data = result.get("data", {})
    if data.get("resultType") == "scalar":
        return [float(data["result"][1])]
    return [float(s["value"][1]) for s in data.get("result", [])]


def shorten(duration: str) -> str:
    secs = sum(int(n) * {"s": 1, "m": 60, "h": 3600}[u] for n, u in re.findall(r"(\d+)([smh])", duration))
    return f"{max(5, secs // 30)}s"


# ---------------------------------------------------------------- expressions

def dashboard_exprs() -> list[tuple[str, str, str, str]]:
    """(uid, panel title, refId, expr) of every panel query, variables substituted as
    Grafana would: $__rate_interval → 1m, $__range → 5m, $instance → .* (All)."""
    out = []
    for f in sorted((HERE / "grafana" / "dashboards").glob("*.json")):
        d = json.loads(f.read_text())
        panels = list(d.get("panels", []))
        for p in list(panels):
            panels += p.get("panels", [])
        for p in panels:
            for t in p.get("targets", []):
                expr = (t["expr"].replace("$__rate_interval", "1m").replace("$__range", "5m")
                        .replace("$instance", ".*"))
                out.append((d["uid"], p["title"], t["refId"], expr))
    return out


def variable_queries() -> set[str]:
    out = set()
    for f in sorted((HERE / "grafana" / "dashboards").glob("*.json")):
        for v in json.loads(f.read_text())["templating"]["list"]:
            if v["type"] == "query":
                out.add(v["query"])
    return out


def rule_exprs() -> list[tuple[str, str]]:
    rules = yaml.safe_load((HERE / "rules" / "kurz.rules.yml").read_text())
    return [(r.get("alert") or r["record"], r["expr"]) for g in rules["groups"] for r in g["rules"]]


# A metric name in an expression; not part of a recording rule's name (job:kurz_…:rate5m).
METRIC = re.compile(r"(?<![\w:])((?:kurz|process)_[a-z0-9_]+)(?![\w:])")


def base_name(name: str) -> str:
    return re.sub(r"_(bucket|count|sum)$", "", name)


def catalog_metrics() -> set[str]:
    text = (HERE / "README.md").read_text()
    section = text.split("## Metric catalog", 1)[1]
    return {base_name(m) for m in METRIC.findall(section)}


# ---------------------------------------------------------------- the test

def main() -> int:
    TMP.mkdir(parents=True, exist_ok=True)
    receiver = Receiver()
    kurz1_port, kurz2_port, prom_port, am_port = free_ports(4)
    ports = [kurz1_port, kurz2_port]

    # kurz ×2
    env = {
        "KURZ_DATABASE_URL": os.environ["KURZ_TEST_PG"],
        "KURZ_DATABASE_READ_URLS": os.environ["KURZ_TEST_PG_REPLICA"],
        "KURZ_REDIS_URL": os.environ["KURZ_TEST_REDIS"],
        "KURZ_ADMIN_API_KEY": ADMIN_KEY,
        "KURZ_JWT_SECRET": "".join(random.choices("0123456789abcdef", k=64)),
        "KURZ_TRUSTED_PROXIES": "127.0.0.1/32",
        "KURZ_PUBLIC_BASE_URL": f"http://127.0.0.1:{ports[0]}",
        "KURZ_DATABASE_ACQUIRE_TIMEOUT_MS": "1000",
        "KURZ_ANALYTICS_FLUSH_MS": "500",
        "KURZ_ANALYTICS_STORE_HOLD_MS": "0",
        "KURZ_ANALYTICS_SINK_TIMEOUT_SECS": "3",
        "KURZ_LOG": "warn",
        "KURZ_LOG_FORMAT": "json",
    }
    log("kurz migrate")
    subprocess.run([KURZ, "migrate"], check=True, env={**os.environ, **env}, stdout=subprocess.DEVNULL)
    for n, port in enumerate(ports, 1):
        start(f"kurz{n}", [KURZ, "serve"], {**env, "KURZ_LISTEN": f"127.0.0.1:{port}",
                                            "KURZ_ANALYTICS_SPOOL_DIR": str(TMP / f"spool{n}")})
    for n, port in enumerate(ports, 1):
        wait_ok(f"http://127.0.0.1:{port}/health", 30, f"kurz{n}")
    log(f"kurz on 127.0.0.1:{ports[0]} and 127.0.0.1:{ports[1]} ({KURZ})")

    # Alertmanager, with the config rendered as an operator would
    am_config = TMP / "alertmanager.yml"
    subprocess.run(["bash", str(HERE / "render-alertmanager.sh"), str(am_config)], check=True, env={
        **os.environ,
        "KURZ_PAGER_WEBHOOK_URL": f"http://127.0.0.1:{receiver.port}/pager",
        "KURZ_CHAT_WEBHOOK_URL": f"http://127.0.0.1:{receiver.port}/chat",
    })
    start("alertmanager", ["prometheus-alertmanager", f"--config.file={am_config}",
                           f"--storage.path={TMP / 'am-data'}", f"--web.listen-address=127.0.0.1:{am_port}",
                           "--cluster.listen-address=", "--log.level=warn"])
    wait_ok(f"http://127.0.0.1:{am_port}/-/ready", 30, "alertmanager")

    # Prometheus, with the rules' for: shortened (see the module doc)
    rules = yaml.safe_load((HERE / "rules" / "kurz.rules.yml").read_text())
    for g in rules["groups"]:
        for r in g["rules"]:
            if "for" in r:
                r["for"] = shorten(r["for"])
    (TMP / "kurz.rules.yml").write_text(yaml.safe_dump(rules, sort_keys=False))
    (TMP / "prometheus.yml").write_text(yaml.safe_dump({
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(TMP / "kurz.rules.yml")],
        "alerting": {"alertmanagers": [{"static_configs": [{"targets": [f"127.0.0.1:{am_port}"]}]}]},
        "scrape_configs": [{"job_name": "kurz",
                            "static_configs": [{"targets": [f"127.0.0.1:{p}" for p in ports]}]}],
    }))
    subprocess.run(["promtool", "check", "config", str(TMP / "prometheus.yml")], check=True, stdout=subprocess.DEVNULL)
    start("prometheus", ["prometheus", f"--config.file={TMP / 'prometheus.yml'}",
                         f"--storage.tsdb.path={TMP / 'prom-data'}", f"--web.listen-address=127.0.0.1:{prom_port}",
                         "--log.level=warn"])
    wait_ok(f"http://127.0.0.1:{prom_port}/-/ready", 30, "prometheus")
    prom = Prom(prom_port)
    log(f"Prometheus 127.0.0.1:{prom_port}, Alertmanager 127.0.0.1:{am_port}, webhooks 127.0.0.1:{receiver.port}")

    # 2. healthy traffic
    c1 = Client(ports[0])
    codes = []
    for _ in range(10):
        status, code = create(c1, admin())
        if status != 201:
            raise RuntimeError(f"create answered {status}:\n{tail('kurz1')}")
        codes.append(code)
    log("30 s of traffic on both instances")
    tally: dict = {}
    drive(ports, codes, 30, True, tally)
    total = sum(tally.values())
    log(f"{total} requests: " + ", ".join(f"{op} {st}: {n}" for (op, st), n in sorted(tally.items())))
    time.sleep(3)  # the last clicks flushed and scraped

    targets = prom.api("/api/v1/targets")["activeTargets"]
    up = [t["scrapeUrl"] for t in targets if t["health"] == "up"]
    if len(up) != 2:
        fail(f"Prometheus scrapes {len(up)} of 2 kurz targets: {[(t['scrapeUrl'], t['lastError']) for t in targets]}")
    groups = prom.api("/api/v1/rules")["groups"]
    loaded = sum(len(g["rules"]) for g in groups)
    bad_rules = [(r["name"], r.get("lastError")) for g in groups for r in g["rules"] if r.get("health") == "err"]
    if bad_rules:
        fail(f"rules failing in Prometheus: {bad_rules}")
    firing = [(a["labels"]["alertname"], a["labels"].get("reason", "")) for a in prom.api("/api/v1/alerts")["alerts"]
              if a["state"] == "firing"]
    if firing:
        fail(f"alerts firing on healthy traffic: {firing}")
    else:
        log(f"{loaded} rules loaded, none in error, no alert firing on healthy traffic")

    # 3. every expression
    present = {base_name(m) for m in prom.api("/api/v1/label/__name__/values")}

    def absent_metrics(expr: str) -> str:
        gone = sorted({base_name(m) for m in METRIC.findall(expr)} - present)
        return f"  (not on /metrics: {', '.join(gone)})" if gone else "  (metrics present, no events yet)"

    no_data = []
    n_panel = n_rule = n_errors = 0
    for uid, title, ref, expr in dashboard_exprs():
        n_panel += 1
        r = prom.query(expr)
        if r.get("status") != "success":
            n_errors += 1
            fail(f"{uid} / {title} [{ref}]: {r.get('error')}\n    {expr}")
        elif not samples(r):
            no_data.append(f"panel {uid} / {title} [{ref}]" + absent_metrics(expr))
    for q in sorted(variable_queries()):
        m = re.fullmatch(r"label_values\((.+), *(\w+)\)", q)
        values = prom.api(f"/api/v1/label/{m.group(2)}/values?" + urllib.parse.urlencode({"match[]": m.group(1)}))
        if len(values) != 2:
            fail(f"variable query {q} gives {values}, expected the 2 instances")
    for name, expr in rule_exprs():
        n_rule += 1
        r = prom.query(expr)
        if r.get("status") != "success":
            n_errors += 1
            fail(f"rule {name}: {r.get('error')}\n    {expr}")
        elif not samples(r) and ":" in name:
            no_data.append(f"recording rule {name}" + absent_metrics(expr))
    for uid, title, positive in CORE_PANELS:
        exprs = [e for u, t, _, e in dashboard_exprs() if u == uid and t == title]
        if not exprs:
            fail(f"core panel {uid} / {title} is not on its dashboard")
        for e in exprs:
            vals = [v for v in samples(prom.query(e)) if not math.isnan(v)]
            if not vals or (positive and not any(v > 0 for v in vals)):
                fail(f"core panel {uid} / {title} has no {'positive ' if positive else ''}data: {e}")
            else:
                log(f"core panel {uid} / {title}: {vals[0]:.4g}")
    log(f"evaluated {n_panel} panel queries and {n_rule} rule expressions: {n_errors} errors")
    if no_data:
        print("== expressions without data (their metrics are not on /metrics yet, or had no events):", file=sys.stderr)
        for x in no_data:
            print(f"   - {x}", file=sys.stderr)

    # 4. break: PostgreSQL (replica and primary) down under traffic
    log("stopping PostgreSQL (replica and primary) under traffic")
    tmp = os.environ["SERVICES_TMP"]
    pg_ctl("-D", f"{tmp}/pg-replica", "-m", "fast", "stop")
    pg_ctl("-D", f"{tmp}/pg", "-m", "fast", "stop")
    done = threading.Event()
    broken_tally: dict = {}
    traffic = threading.Thread(target=drive, args=(ports, codes, 180, False, broken_tally, done))
    traffic.start()
    want_pager = {"KurzStoreUnavailable", "KurzHighErrorRate"}
    t0 = time.time()
    try:
        while time.time() - t0 < 150:
            pager = {a["labels"]["alertname"] for a in receiver.alerts("/pager")}
            chat = {a["labels"]["alertname"] for a in receiver.alerts("/chat")}
            if want_pager <= pager and chat:
                break
            time.sleep(1)
    finally:
        done.set()
        traffic.join()
    waited = time.time() - t0
    log("outage traffic: " + ", ".join(f"{op} {st}: {n}" for (op, st), n in sorted(broken_tally.items())))
    pager_alerts = receiver.alerts("/pager")
    chat_alerts = receiver.alerts("/chat")
    pager = sorted({a["labels"]["alertname"] for a in pager_alerts})
    chat = sorted({a["labels"]["alertname"] for a in chat_alerts})
    log(f"after {waited:.0f} s: pager received {pager}, chat received {chat}")
    for name in sorted(want_pager - set(pager)):
        fail(f"{name} did not reach the pager receiver")
    if not chat:
        fail("no warning reached the chat receiver (expected KurzClickSpoolGrowing: clicks of cached "
             "redirects spool while the store is down)")
    for path, alerts, severity in (("pager", pager_alerts, "critical"), ("chat", chat_alerts, "warning")):
        for name, sev in sorted({(a["labels"]["alertname"], a["labels"].get("severity")) for a in alerts}):
            if sev != severity:
                fail(f"{name} ({sev}) was routed to the {path}")
    if "KurzErrorRate" in chat:
        fail("KurzErrorRate reached the chat although KurzHighErrorRate fired (inhibition)")
    am_alerts = json.loads(get(f"http://127.0.0.1:{am_port}/api/v2/alerts?" + urllib.parse.urlencode(
        {"filter": 'alertname="KurzErrorRate"'}))[1] or b"[]")
    if not am_alerts:
        fail("KurzErrorRate never reached Alertmanager")
    elif not all(a["status"]["inhibitedBy"] for a in am_alerts):
        fail(f"KurzErrorRate is not inhibited by KurzHighErrorRate: {[a['status'] for a in am_alerts]}")
    else:
        log("KurzErrorRate is in Alertmanager, inhibited by its critical twin")

    # restore
    log("restarting PostgreSQL")
    pg_ctl("-D", f"{tmp}/pg", "-l", f"{tmp}/pg.log", "-w", "start")
    pg_ctl("-D", f"{tmp}/pg-replica", "-l", f"{tmp}/pg-replica.log", "-w", "start")
    for n, port in enumerate(ports, 1):
        try:
            wait_ok(f"http://127.0.0.1:{port}/health", 60, f"kurz{n}")
        except RuntimeError as e:
            fail(str(e))
    for port in ports:
        status, code = create(Client(port), admin())
        if status != 201:
            fail(f"create on 127.0.0.1:{port} after the restore answered {status}")
    log("both instances healthy again, creates work")

    # 5. catalog metrics on /metrics
    time.sleep(2)
    present = set(prom.api("/api/v1/label/__name__/values"))
    used = {base_name(m) for _, _, _, e in dashboard_exprs() for m in METRIC.findall(e)}
    used |= {base_name(m) for _, e in rule_exprs() for m in METRIC.findall(e)}
    present_base = {base_name(m) for m in present}
    missing_used = sorted(used - present_base)
    missing_catalog = sorted(catalog_metrics() - present_base)
    if missing_catalog or missing_used:
        print("== catalog metrics not on /metrics of this kurz:", file=sys.stderr)
        for m in sorted(set(missing_catalog) | set(missing_used)):
            print(f"   - {m}" + ("" if m in used else "  (not used by a rule or panel)"), file=sys.stderr)
        if STRICT:
            fail(f"MONITORING_STRICT=1: {len(set(missing_catalog) | set(missing_used))} catalog metrics missing")
    else:
        log("every catalog metric is on /metrics")

    return 1 if failures else 0


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    status = 1
    try:
        status = main()
    except Exception as e:  # report, then clean up
        fail(f"{type(e).__name__}: {e}")
    finally:
        for name, p in reversed(procs):
            stop(p)
    if failures:
        print(f"deploy/monitoring/live_test: FAILED ({len(failures)} failures)", file=sys.stderr)
        for name, _ in procs:
            if name.startswith("kurz"):
                print(f"--- last lines of {name}:\n{tail(name)}", file=sys.stderr)
    else:
        print("deploy/monitoring/live_test: passed", file=sys.stderr)
    sys.exit(1 if failures else status)
