"""Seeds a fresh kurz with the links the fuzzer works on (tests/fuzz/run.sh runs it).

    python seed.py BASE_URL ADMIN_KEY

Every link is created with the admin key, so the fuzzer (which sends that key) owns
them all. The aliases are fixed: tests/fuzz/schemathesis.toml lists them as the
values of the `code` path parameter. Exits non-zero if any step is not answered as
the contract says.
"""

import json
import sys
import time
from datetime import datetime, timedelta, timezone
import urllib.error
import urllib.request

BASE, KEY = sys.argv[1], sys.argv[2]

# alias -> create body (besides the alias). One per kind of link the API has.
LINKS = {
    "fz-live1": {"original_url": "https://example.com/fuzz/live?q=1"},
    "fz-perm1": {"original_url": "https://example.org/fuzz/permanent", "redirect_type": 301},
    "fz-meta1": {
        "original_url": "https://example.net/fuzz/meta",
        "metadata": {"campaign": "fuzz", "source": "seed"},
        "expires_in_days": 30,
    },
    "fz-until1": {"original_url": "https://example.com/fuzz/until", "expires_at": "2031-01-01T00:00:00Z"},
    "fz-off1": {"original_url": "https://example.com/fuzz/disabled"},
}
# Only PATCH gets these, and only DELETE those, so the other operations keep their links.
PATCHABLE = [f"fz-pat{i}" for i in range(1, 4)]
DELETABLE = [f"fz-del{i}" for i in range(1, 7)]


# Clicks from a browser, so that they count as people (a bot's click is counted apart).
BROWSER = {
    "User-Agent": "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0",
    "Referer": "https://news.example.com/item?id=1",
}


def call(method, path, body=None, expect=(200,), auth=True, headers=None):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(BASE + path, data=data, method=method, headers=headers or {})
    if data is not None:
        req.add_header("Content-Type", "application/json")
    if auth:
        req.add_header("X-API-Key", KEY)
    opener = urllib.request.build_opener(NoRedirect)
    try:
        with opener.open(req, timeout=10) as res:
            status, raw = res.status, res.read()
    except urllib.error.HTTPError as e:
        status, raw = e.code, e.read()
    if status not in expect:
        sys.exit(f"seed: {method} {path} answered {status}, wanted {expect}: {raw[:300]!r}")
    return json.loads(raw) if raw and raw[:1] in b"{[" else None


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


for alias, body in LINKS.items():
    call("POST", "/api/v1/urls", {**body, "custom_alias": alias}, expect=(201,))
for alias in PATCHABLE + DELETABLE:
    call("POST", "/api/v1/urls", {"original_url": f"https://example.com/fuzz/{alias}", "custom_alias": alias}, expect=(201,))
generated = call("POST", "/api/v1/urls", {"original_url": "https://example.com/fuzz/generated"}, expect=(201,))["short_code"]
bulk = call(
    "POST", "/api/v1/urls/bulk",
    {"urls": [{"original_url": f"https://example.com/fuzz/bulk/{i}"} for i in range(3)]},
    expect=(201,),
)
# A disabled link: its redirect answers 410 DISABLED, its info 200 with is_active false.
call("PATCH", "/api/v1/urls/fz-off1", {"is_active": False})
# An expired link (redirect and info answer 410 EXPIRED): `expires_at` only has to be in
# the future when the link is created, so two seconds ahead, then wait it out.
soon = datetime.now(timezone.utc) + timedelta(seconds=2)
call("POST", "/api/v1/urls", {
    "original_url": "https://example.com/fuzz/expired", "custom_alias": "fz-exp1",
    "expires_at": soon.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
}, expect=(201,))
# Clicks, so that info and stats carry non-zero counters and series.
for code in ("fz-live1", "fz-live1", "fz-perm1", generated):
    call("GET", "/" + code, expect=(301, 302), auth=False, headers=BROWSER)
call("GET", "/fz-off1", expect=(410,), auth=False, headers=BROWSER)
# The clicks reach the store within KURZ_ANALYTICS_FLUSH_MS + _STORE_HOLD_MS (200 + 200
# in run.sh).
for _ in range(50):
    if call("GET", "/api/v1/urls/fz-live1/stats")["total_clicks"] >= 2:
        break
    time.sleep(0.1)
else:
    sys.exit("seed: the clicks on fz-live1 never showed in its stats")

for _ in range(50):
    if datetime.now(timezone.utc) > soon:
        break
    time.sleep(0.1)
call("GET", "/fz-exp1", expect=(410,), auth=False)

listed = call("GET", "/api/v1/urls?limit=100")["items"]
print(
    f"seeded {len(listed)} links: {', '.join(LINKS)}, {', '.join(PATCHABLE)} (for PATCH), "
    f"{', '.join(DELETABLE)} (for DELETE), fz-exp1 (expired), "
    f"{generated} (generated), {len(bulk['results'])} from bulk; 4 clicks and 1 refused (fz-off1)"
)
