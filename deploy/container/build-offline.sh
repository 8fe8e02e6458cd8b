#!/usr/bin/env bash
# Builds the image of ./Containerfile without a registry, runs it and checks it.
#
#   bash deploy/container/build-offline.sh        (from the repository root)
#   KURZ_BIN=path/to/kurz bash deploy/container/build-offline.sh
#
# The Containerfile's base images cannot be pulled here, so this script makes both
# stand-ins itself:
#   - the base: a root filesystem holding exactly the shared libraries `ldd` lists for
#     KURZ_BIN (none for a static binary), /etc/passwd and /etc/group with the nonroot
#     user (65532), the CA certificates and /tmp - what distroless/cc provides - imported
#     with `podman import`;
#   - the builder: KURZ_BIN (default target/debug/kurz) in place of `cargo build`.
# The final stage is the Containerfile's own, cut out and with only its FROM and its
# `COPY --from=builder` sources rewritten, so labels, user, environment, volume,
# healthcheck and entrypoint are the ones users get. Then it runs the image read-only
# with a named volume on /data, checks /health and a create -> redirect through it, runs
# the HEALTHCHECK if the binary has `kurz healthcheck`, stops it (SIGTERM must exit 0),
# checks the link still redirects from a new container on the same volume, and removes
# containers, volume and images.
#
# Needs podman and runc (installed from Debian if missing, as root). KEEP_IMAGE=1 keeps
# the image (localhost/kurz-offline:VERSION-offline-PID) and its base for a look at them.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"

log() { printf '== %s\n' "$*" >&2; }
fail() { printf 'FAIL: %s\n' "$*" >&2; exit 1; }

KURZ_BIN=${KURZ_BIN:-${CARGO_TARGET_DIR:-target}/debug/kurz}
[[ -x $KURZ_BIN ]] || fail "no kurz binary at $KURZ_BIN (build it, or set KURZ_BIN)"

missing=()
command -v podman >/dev/null || missing+=(podman)
command -v runc >/dev/null || missing+=(runc)
[[ -f /etc/ssl/certs/ca-certificates.crt ]] || missing+=(ca-certificates)
if ((${#missing[@]})); then
    [[ $(id -u) -eq 0 ]] || fail "need root to install ${missing[*]} (or install them yourself)"
    log "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
PODMAN=(podman --runtime runc)

VERSION=$("$KURZ_BIN" --version | awk '{print $2}')
[[ -n $VERSION ]] || fail "$KURZ_BIN --version printed no version"
TAG=$VERSION-offline-$$
BASE=localhost/kurz-offline-base:$TAG
IMAGE=localhost/kurz-offline:$TAG
CTR=kurz-offline-$$
VOL=kurz-offline-data-$$
WORK=$(mktemp -d /tmp/kurz-image.XXXXXX)
cleanup() {
    "${PODMAN[@]}" rm -f -t 0 "$CTR" >/dev/null 2>&1 || true
    if [[ ${KEEP_IMAGE:-0} != 1 ]]; then
        podman rmi -f "$IMAGE" "$BASE" >/dev/null 2>&1 || true
    fi
    podman volume rm -f "$VOL" >/dev/null 2>&1 || true
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 143' TERM INT # so that a timeout still cleans up

# ---- the base: what distroless/cc-debian12:nonroot holds, for this binary ------------
log "base image from $KURZ_BIN's shared libraries"
rootfs=$WORK/rootfs
mkdir -p "$rootfs"/{etc/ssl/certs,tmp,home/nonroot}
chmod 1777 "$rootfs/tmp"
chown 65532:65532 "$rootfs/home/nonroot"
libs=$(ldd "$KURZ_BIN" 2>&1 | awk '/=> \//{print $3} /^[[:space:]]*\/[^ ]+ \(/{print $1}' || true)
if [[ -z $libs ]]; then
    ldd "$KURZ_BIN" 2>&1 | grep -Eq 'not a dynamic executable|statically linked' \
        || fail "ldd $KURZ_BIN listed no libraries and does not call it static"
    log "static binary: no libraries"
fi
for lib in $libs; do
    mkdir -p "$rootfs$(dirname "$lib")"
    cp -L "$lib" "$rootfs$lib"
done
cat >"$rootfs/etc/passwd" <<'EOF'
root:x:0:0:root:/root:/sbin/nologin
nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin
nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin
EOF
cat >"$rootfs/etc/group" <<'EOF'
root:x:0:
nobody:x:65534:
nonroot:x:65532:
EOF
cp /etc/ssl/certs/ca-certificates.crt "$rootfs/etc/ssl/certs/"
tar -C "$rootfs" -c . | podman import -q - "$BASE" >/dev/null

# ---- the final stage of the Containerfile, fed from local files -----------------------
ctx=$WORK/context
mkdir -p "$ctx/out"
install -m 0755 "$KURZ_BIN" "$ctx/out/kurz"
install -d -m 0700 "$ctx/out/data"
last_from=$(grep -n '^FROM ' Containerfile | tail -n 1 | cut -d: -f1)
tail -n +"$last_from" Containerfile \
    | sed -E -e "1s|^FROM [^ ]+|FROM $BASE|" \
        -e 's#^COPY --from=builder (.*)/out/#COPY \1out/#' >"$WORK/Containerfile.offline"
grep -q -- '--from=' "$WORK/Containerfile.offline" \
    && fail "the final stage copies from something this script does not provide: $(grep -- '--from=' "$WORK/Containerfile.offline")"
log "building $IMAGE (the Containerfile's final stage on that base)"
podman build -q --format docker --build-arg VERSION="$VERSION" \
    -f "$WORK/Containerfile.offline" -t "$IMAGE" "$ctx" >/dev/null

# ---- the image's configuration is the Containerfile's --------------------------------
podman image inspect "$IMAGE" --format '{{json .}}' >"$WORK/inspect.json"
python3 - "$WORK/inspect.json" "$VERSION" <<'PY'
import json, sys
img = json.load(open(sys.argv[1]))
img = img[0] if isinstance(img, list) else img
cfg = img["Config"]
want = {
    "user": ("65532:65532", cfg.get("User")),
    "entrypoint": (["/usr/local/bin/kurz"], cfg.get("Entrypoint")),
    "cmd": (["serve"], cfg.get("Cmd")),
    "workdir": ("/data", cfg.get("WorkingDir")),
    "volume /data": (True, "/data" in (cfg.get("Volumes") or {})),
    "port 8080": (True, "8080/tcp" in (cfg.get("ExposedPorts") or {})),
    "version label": (sys.argv[2], (cfg.get("Labels") or {}).get("org.opencontainers.image.version")),
    "healthcheck": (["CMD", "/usr/local/bin/kurz", "healthcheck"], (img.get("Healthcheck") or cfg.get("Healthcheck") or {}).get("Test")),
}
bad = [f"{k}: want {w!r}, got {g!r}" for k, (w, g) in want.items() if w != g]
if bad:
    sys.exit("image configuration: " + "; ".join(bad))
print(f"image configuration: {len(want)} of {len(want)} as in the Containerfile "
      f"(user 65532, entrypoint, volume /data, healthcheck, version {sys.argv[2]}); "
      f"size {img['Size'] / 1e6:.1f} MB")
PY

# ---- run it: read-only root, /data a named volume, host loopback --------------------
# Podman here has no systemd for healthcheck timers and says so on stderr at each start
# and stop: that goes to a log, shown only when something fails.
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
BASE_URL=http://127.0.0.1:$PORT
podman volume create "$VOL" >/dev/null
run_kurz() {
    "${PODMAN[@]}" run -d --name "$CTR" --read-only -v "$VOL:/data" \
        --network host --ulimit nofile=1024:1024 --ulimit nproc=1024:1024 \
        -e KURZ_LISTEN="127.0.0.1:$PORT" -e KURZ_PUBLIC_BASE_URL="$BASE_URL" \
        "$IMAGE" >/dev/null 2>>"$WORK/podman.log" \
        || { cat "$WORK/podman.log" >&2; fail "podman could not start the container"; }
}
# stop_kurz: SIGTERM; kurz drains and must exit 0.
stop_kurz() {
    "${PODMAN[@]}" stop -t 10 "$CTR" >/dev/null 2>>"$WORK/podman.log"
    local code
    code=$("${PODMAN[@]}" inspect "$CTR" --format '{{.State.ExitCode}}')
    "${PODMAN[@]}" rm "$CTR" >/dev/null 2>>"$WORK/podman.log"
    [[ $code == 0 ]] || fail "kurz exited $code on SIGTERM, want 0"
}
# probe create|redirect CODE_FILE: waits for /health, then creates a link (code into
# CODE_FILE) or checks that the link in CODE_FILE still redirects.
probe() {
    python3 - "$BASE_URL" "$1" "$2" <<'PY' || { "${PODMAN[@]}" logs "$CTR" 2>&1 | tail -n 30 >&2; fail "the container did not serve"; }
import http.client, json, sys, time, urllib.parse
base, mode, code_file = sys.argv[1:4]
u = urllib.parse.urlsplit(base)
def req(method, path, body=None):
    c = http.client.HTTPConnection(u.hostname, u.port, timeout=5)
    c.request(method, path, body=body, headers={"content-type": "application/json"} if body else {})
    r = c.getresponse()
    return r.status, r.getheader("location"), r.read()
deadline = time.time() + 20
while True:
    try:
        status, _, body = req("GET", "/health")
        if status == 200:
            break
    except OSError:
        pass
    if time.time() > deadline:
        sys.exit("no 200 from /health within 20 s")
    time.sleep(0.2)
print("GET /health: 200", body.decode()[:60] + "...")
target = "https://example.com/from-the-container"
if mode == "create":
    status, _, body = req("POST", "/api/v1/urls", json.dumps({"original_url": target}))
    if status != 201:
        sys.exit(f"create: want 201, got {status} {body[:200]!r}")
    code = json.loads(body)["short_code"]
    open(code_file, "w").write(code)
    print(f"POST /api/v1/urls: 201, code {code}")
code = open(code_file).read()
status, location, _ = req("GET", f"/{code}")
if status != 302 or location != target:
    sys.exit(f"redirect /{code}: want 302 to {target}, got {status} to {location}")
print(f"GET /{code}: 302 to {location}")
PY
}

log "running $IMAGE read-only on $BASE_URL, /data on volume $VOL"
run_kurz
probe create "$WORK/code"
user=$("${PODMAN[@]}" top "$CTR" huser user | tail -n +2 | head -n 1 | tr -s ' ')
[[ $user == "65532 nonroot" ]] || fail "the container's process runs as '$user', want uid 65532 (nonroot)"
echo "process user: uid 65532 (nonroot), root filesystem read-only"
if "$KURZ_BIN" healthcheck --help >/dev/null 2>&1; then
    "${PODMAN[@]}" healthcheck run "$CTR" 2>>"$WORK/podman.log" \
        || { cat "$WORK/podman.log" >&2; fail "the image's HEALTHCHECK (kurz healthcheck) failed"; }
    echo "HEALTHCHECK (kurz healthcheck): healthy"
else
    echo "HEALTHCHECK not run: $KURZ_BIN has no 'healthcheck' subcommand"
fi
stop_kurz
log "a new container on the same volume"
run_kurz
probe redirect "$WORK/code"
stop_kurz
echo "container image check: passed (link kept across containers on the volume; both stopped cleanly on SIGTERM)"
