#!/usr/bin/env bash
# Container test (`make container-test`): on a machine without a Docker engine,
#   1. make a Debian bookworm base image with debootstrap (cached: skipped when
#      localhost/debian:bookworm exists),
#   2. build the Dockerfile with podman (BASE_IMAGE=that base, TORCH=cpu, torch from the
#      local wheel directory mounted at /wheels),
#   3. check the image's metadata (non-root user, EXPOSE 8000, HEALTHCHECK without curl,
#      OPENCV_IO_MAX_IMAGE_PIXELS, bundled model),
#   4. start the image's CMD inside its filesystem (podman create + mount + chroot, as the
#      image's non-root user, with the image's ENV and WORKDIR) on a loopback port,
#   5. wait for /readyz, POST a real fundus image to /segment and check the masks,
#      check /metrics, run the image's HEALTHCHECK command (must pass while the server is
#      up and fail once it is stopped),
# and exits non-zero on any broken step. Cleans up after itself (server, mounts,
# container; the images are kept as a build cache, REMOVE_IMAGE=1 removes the app image).
#
# Needs root, podman and debootstrap (apt-get install podman debootstrap); installs nothing.
# Environment: IMAGE, BASE_IMAGE, WHEELS (dir with the torch CPU wheel, default /opt/wheels),
# CONTEXT (build context, default the checkout), DEBIAN_MIRROR, CT_PORT (loopback port,
# default a free one), SAMPLE, READY_TIMEOUT (s), REMOVE_IMAGE=1.
# Timing on the 2-core build machines: 6-7 min cold (debootstrap + import 105 s, build
# 256-390 s, start + /segment + checks about 20 s), about 1 min with the base image and the
# build cache in place.
set -Eeuo pipefail

cd "$(dirname "$0")/.."
REPO=$PWD
IMAGE=${IMAGE:-localhost/redseg:container-test}
BASE_IMAGE=${BASE_IMAGE:-localhost/debian:bookworm}
WHEELS=${WHEELS:-/opt/wheels}
DEBIAN_MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
SAMPLE=${SAMPLE:-assets/IDRiD_05.jpg}
CONTEXT=${CONTEXT:-$REPO}
READY_TIMEOUT=${READY_TIMEOUT:-600}
BUNDLED=checkpoints/redseg-default.safetensors

T0=$SECONDS
TSTEP=$SECONDS
WORK=$(mktemp -d /tmp/redseg-container-test.XXXXXX)
CID=""
MNT=""
ROOT=""
SERVER_PID=""
BUILD_PID=""
MOUNTED=()

log()  { printf '[container-test %4ds] %s\n' "$((SECONDS - T0))" "$*"; }
step() { log "step done in $((SECONDS - TSTEP))s"; TSTEP=$SECONDS; echo; log "== $*"; }
die()  { log "FAIL: $*"; exit 1; }

cleanup() {
    local rc=$?
    set +e
    if [[ -n "$BUILD_PID" ]] && kill -0 "$BUILD_PID" 2>/dev/null; then kill -TERM "$BUILD_PID"; wait "$BUILD_PID" 2>/dev/null; fi
    if [[ -n "$SERVER_PID" ]] && kill -0 "$SERVER_PID" 2>/dev/null; then
        kill -TERM "$SERVER_PID"
        for _ in $(seq 1 40); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.25; done
        kill -KILL "$SERVER_PID" 2>/dev/null
        wait "$SERVER_PID" 2>/dev/null
    fi
    # Anything else still running inside the image's root (started by this script).
    if [[ -n "$ROOT" ]]; then
        for proc in /proc/[0-9]*; do
            [[ "$(readlink "$proc/root" 2>/dev/null)" == "$ROOT" ]] || continue
            log "killing leftover process ${proc#/proc/} in the image root"
            kill -KILL "${proc#/proc/}" 2>/dev/null
        done
        sleep 0.5
    fi
    for ((i = ${#MOUNTED[@]} - 1; i >= 0; i--)); do umount "${MOUNTED[$i]}" 2>/dev/null || umount -l "${MOUNTED[$i]}"; done
    if [[ -n "$CID" ]]; then
        podman umount "$CID" >/dev/null 2>&1
        podman rm -f "$CID" >/dev/null 2>&1
    fi
    if [[ "${REMOVE_IMAGE:-0}" == 1 ]]; then podman rmi -f "$IMAGE" >/dev/null 2>&1; fi
    if grep -q " $WORK" /proc/mounts; then
        log "WARNING: still mounted under $WORK, not removing it:"; grep " $WORK" /proc/mounts
    else
        rm -rf --one-file-system "$WORK"
    fi
    if [[ $rc -eq 0 ]]; then
        log "PASS (total $((SECONDS - T0))s)"
    else
        log "FAILED with status $rc (total $((SECONDS - T0))s)"
    fi
    exit $rc
}
trap cleanup EXIT
trap 'die "interrupted"' INT TERM

# --------------------------------------------------------------------------- tools
log "== checking tools"
[[ $(id -u) -eq 0 ]] || die "must run as root (debootstrap, podman mount, chroot)"
for tool in podman debootstrap chroot mount umount curl python3 tar; do
    command -v "$tool" >/dev/null || die "missing '$tool' (apt-get install podman debootstrap curl)"
done
[[ -f "$SAMPLE" ]] || die "sample image $SAMPLE missing"
ls "$WHEELS"/torch-*+cpu-*.whl >/dev/null 2>&1 || die "no torch CPU wheel in $WHEELS"
podman --version

# --------------------------------------------------------------------------- base image
step "base image $BASE_IMAGE"
if podman image exists "$BASE_IMAGE"; then
    log "cached: $BASE_IMAGE exists"
else
    ROOTFS="$WORK/rootfs"
    log "debootstrap --variant=minbase bookworm ($DEBIAN_MIRROR)"
    debootstrap --variant=minbase bookworm "$ROOTFS" "$DEBIAN_MIRROR" > "$WORK/debootstrap.log" 2>&1 \
        || { tail -30 "$WORK/debootstrap.log"; die "debootstrap failed"; }
    rm -rf "$ROOTFS"/var/cache/apt/archives/*.deb "$ROOTFS"/var/lib/apt/lists/*
    tar -C "$ROOTFS" -c . | podman import --change 'CMD ["/bin/bash"]' - "$BASE_IMAGE" >/dev/null
    rm -rf "$ROOTFS"
    podman image exists "$BASE_IMAGE" || die "import of $BASE_IMAGE failed"
fi

# --------------------------------------------------------------------------- build
step "podman build ($IMAGE, TORCH=cpu)"
if [[ ! -f "$CONTEXT/$BUNDLED" ]]; then
    log "WARNING: $BUNDLED is not there yet: the image is built without a bundled model and"
    log "         the test serves a small generated checkpoint instead"
    mkdir -p "$CONTEXT/checkpoints"   # COPY checkpoints/ needs the directory
fi
# Behind a TLS-intercepting proxy pip needs this host's CA bundle.
CA_ARGS=()
HOST_CA=${HOST_CA_BUNDLE:-${PIP_CERT:-/etc/ssl/certs/ca-certificates.crt}}
if [[ -f "$HOST_CA" ]]; then
    CA_ARGS=(-v "$HOST_CA:/host-ca.crt:ro" --build-arg PIP_CERT=/host-ca.crt)
fi
podman build --isolation chroot --network host --format docker \
    -v "$WHEELS:/wheels:ro" "${CA_ARGS[@]}" \
    --build-arg BASE_IMAGE="$BASE_IMAGE" \
    --build-arg TORCH=cpu \
    --build-arg TORCH_CPU_INDEX_URL= \
    --build-arg PIP_FIND_LINKS=/wheels \
    -t "$IMAGE" -f "$CONTEXT/Dockerfile" "$CONTEXT" > "$WORK/build.log" 2>&1 &
BUILD_PID=$!
tail -n +1 -f "$WORK/build.log" --pid="$BUILD_PID" \
    | sed -u -n -E 's/^((\[[0-9]+\/[0-9]+\] )?STEP [0-9]+\/[0-9]+: (FROM|RUN|COPY).{0,90}).*/  \1/p; s/^(COMMIT .*|torch .*|ERROR.*|Error.*)/  \1/p' || true
wait "$BUILD_PID" || { BUILD_PID=""; tail -40 "$WORK/build.log"; die "podman build failed"; }
BUILD_PID=""
podman image exists "$IMAGE" || die "image $IMAGE not built"
log "image size: $(podman image inspect -f '{{.Size}}' "$IMAGE" | awk '{printf "%.0f MB", $1/1e6}')"

# --------------------------------------------------------------------------- metadata
step "image metadata"
podman image inspect "$IMAGE" > "$WORK/inspect.json"
python3 - "$WORK/inspect.json" "$WORK" <<'PY'
import json, shlex, sys
info = json.load(open(sys.argv[1]))[0]
work = sys.argv[2]
cfg = info.get("Config") or {}
problems = []
user = cfg.get("User") or ""
if user.split(":")[0] in ("", "root", "0"):
    problems.append(f"image runs as root (USER={user!r})")
if "8000/tcp" not in (cfg.get("ExposedPorts") or {}):
    problems.append(f"EXPOSE 8000 missing: {cfg.get('ExposedPorts')}")
env = dict(e.split("=", 1) for e in cfg.get("Env") or [])
if not env.get("OPENCV_IO_MAX_IMAGE_PIXELS", "").isdigit():
    problems.append("OPENCV_IO_MAX_IMAGE_PIXELS not set in ENV")
hc = info.get("HealthCheck") or info.get("Healthcheck") or cfg.get("Healthcheck") or {}
test = hc.get("Test") or []
if not test or test[0] not in ("CMD", "CMD-SHELL"):
    problems.append(f"no HEALTHCHECK (build with --format docker): {hc}")
elif "curl" in " ".join(test) or "wget" in " ".join(test):
    problems.append("HEALTHCHECK uses curl/wget")
start = (hc.get("StartPeriod") or 0) / 1e9
if test and start < 60:
    problems.append(f"HEALTHCHECK start period {start:.0f}s is too short for model load + warm-up")
cmd = (cfg.get("Entrypoint") or []) + (cfg.get("Cmd") or [])
if not cmd or "service.serve" not in " ".join(cmd):
    problems.append(f"CMD does not start the server (python -m service.serve): {cmd}")
for p in problems:
    print("  problem:", p)
print(f"  user={user} workdir={cfg.get('WorkingDir')} cmd={cmd}")
print(f"  healthcheck={test} start_period={start:.0f}s interval={(hc.get('Interval') or 0)/1e9:.0f}s")
with open(f"{work}/image.env", "w") as f:
    for k, v in env.items():
        f.write(f"{k}={v}\n")
with open(f"{work}/image.sh", "w") as f:
    f.write(f"IMG_USER={shlex.quote(user.split(':')[0])}\n")
    f.write(f"IMG_WORKDIR={shlex.quote(cfg.get('WorkingDir') or '/')}\n")
    f.write("IMG_CMD=(" + " ".join(shlex.quote(c) for c in cmd) + ")\n")
    if test and test[0] == "CMD":
        f.write("IMG_HEALTH=(" + " ".join(shlex.quote(c) for c in test[1:]) + ")\n")
    elif test:
        f.write("IMG_HEALTH=(/bin/sh -c " + shlex.quote(test[1]) + ")\n")
sys.exit(1 if problems else 0)
PY
# shellcheck disable=SC1091
source "$WORK/image.sh"
mapfile -t IMG_ENV < "$WORK/image.env"

# --------------------------------------------------------------------------- start
step "start the image's CMD in its filesystem (podman create + mount + chroot)"
CID=$(podman create "$IMAGE")
MNT=$(podman mount "$CID")
[[ -d "$MNT/opt/venv" && -d "$MNT/app/service" ]] || die "image filesystem at $MNT lacks /opt/venv or /app/service"
# As in docker-compose.yml (read_only: true, tmpfs /tmp): a read-only view of the image's
# filesystem with a tmpfs on /tmp, plus /proc and /dev.
ROOT="$WORK/root"
mkdir -p "$ROOT"
mount --bind "$MNT" "$ROOT" && MOUNTED+=("$ROOT")
mount -o remount,bind,ro "$ROOT"
mount -t proc proc "$ROOT/proc" && MOUNTED+=("$ROOT/proc")
mount --bind /dev "$ROOT/dev" && MOUNTED+=("$ROOT/dev")
mount -t tmpfs -o mode=1777,size=1g tmpfs "$ROOT/tmp" && MOUNTED+=("$ROOT/tmp")
if touch "$ROOT/app/.write-test" 2>/dev/null; then die "the read-only view is writable"; fi

# The image's user, resolved in the image's own /etc/passwd.
PW=$(awk -F: -v u="$IMG_USER" '$1 == u || $3 == u' "$ROOT/etc/passwd" | head -1)
[[ -n "$PW" ]] || die "user $IMG_USER not in the image's /etc/passwd"
IFS=: read -r _ _ RUN_UID RUN_GID _ RUN_HOME _ <<< "$PW"
[[ "$RUN_UID" != 0 ]] || die "image user is root"
log "running as $IMG_USER ($RUN_UID:$RUN_GID), home $RUN_HOME"

PORT=${CT_PORT:-$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}
URL="http://127.0.0.1:$PORT"
EXTRA_ENV=("HOME=$RUN_HOME" "UVICORN_HOST=127.0.0.1" "UVICORN_PORT=$PORT")

# A command line that runs "$@" inside the image as its user, with its ENV, in its WORKDIR
# (chroot, env and sh exec each other: one process, whose pid is the command's).
image_command() {
    IMAGE_CMD=(chroot --userspec="$RUN_UID:$RUN_GID" "$ROOT" /usr/bin/env -i "${IMG_ENV[@]}" "${EXTRA_ENV[@]}"
               /bin/sh -c 'cd "$0" && exec "$@"' "$IMG_WORKDIR" "$@")
}
in_image() { image_command "$@"; "${IMAGE_CMD[@]}"; }

if [[ -f "$CONTEXT/$BUNDLED" ]]; then
    [[ -f "$ROOT/app/$BUNDLED" ]] || die "the bundled model $BUNDLED is not in the image"
    cmp -s "$CONTEXT/$BUNDLED" "$ROOT/app/$BUNDLED" || die "the image's /app/$BUNDLED differs from the checkout's"
fi
extra=$(find "$ROOT/app/checkpoints" -type f ! -name redseg-default.safetensors ! -name redseg-fast.safetensors ! -name '*.md' ! -name '*.json' ! -path '*.openvino/int8-*' | head -3)
# The CPU image makes the bundled models' OpenVINO int8 IRs at build time (served by REDSEG_BACKEND=auto).
compgen -G "$ROOT/app/checkpoints/redseg-default.openvino/int8-*.xml" >/dev/null || die "the image has no int8 IR of the default model"
[[ -z "$extra" ]] || die "files besides the bundled models in the image's checkpoints/: $extra"
if [[ -f "$ROOT/app/$BUNDLED" ]]; then
    log "serving the bundled model /app/$BUNDLED ($(du -h "$ROOT/app/$BUNDLED" | cut -f1))"
else
    log "WARNING: no bundled model in the image; generating a small checkpoint inside it"
    in_image python -c "
from model.checkpoint import save_checkpoint
from model.config import RedSegConfig
from model.network import RedSeg
save_checkpoint('/tmp/redseg-small.safetensors', RedSeg(RedSegConfig(width=0.0625, working_long_side=256)), name='redseg-small', version='test')
" || die "could not make a small checkpoint with the image's Python"
    EXTRA_ENV+=("REDSEG_CHECKPOINT=/tmp/redseg-small.safetensors")
fi

log "starting: ${IMG_CMD[*]} on $URL"
image_command "${IMG_CMD[@]}"
"${IMAGE_CMD[@]}" > "$WORK/server.log" 2>&1 &
SERVER_PID=$!

# --------------------------------------------------------------------------- ready
step "wait for /readyz (timeout ${READY_TIMEOUT}s)"
ready=0
for _ in $(seq 1 "$READY_TIMEOUT"); do
    if ! kill -0 "$SERVER_PID" 2>/dev/null; then
        tail -40 "$WORK/server.log"; die "the server exited before it was ready"
    fi
    code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 "$URL/readyz" || true)
    if [[ "$code" == 200 ]]; then ready=1; break; fi
    sleep 1
done
[[ $ready == 1 ]] || { tail -40 "$WORK/server.log"; die "/readyz not 200 after ${READY_TIMEOUT}s"; }
curl -sS --max-time 5 "$URL/readyz"; echo
code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 "$URL/healthz")
[[ "$code" == 200 ]] || die "/healthz answered $code"

# --------------------------------------------------------------------------- segment
step "POST $SAMPLE to /segment"
t=$SECONDS
code=$(curl -sS -o "$WORK/segment.json" -w '%{http_code}' --max-time 600 \
    -F "image=@$SAMPLE;type=image/jpeg" "$URL/segment") || die "curl /segment failed"
log "/segment answered $code in $((SECONDS - t))s ($(stat -c %s "$WORK/segment.json") bytes)"
[[ "$code" == 200 ]] || { head -c 2000 "$WORK/segment.json"; echo; tail -20 "$WORK/server.log"; die "/segment answered $code"; }
python3 - "$WORK/segment.json" "$SAMPLE" <<'PY' || die "the /segment response does not hold valid masks"
# Finds every base64 PNG under a key naming a mask or probability map, per lesion, and
# checks it decodes (PNG signature, IHDR) at the upload's resolution.
import base64, binascii, json, struct, sys

resp = json.load(open(sys.argv[1]))
jpeg = open(sys.argv[2], "rb").read()

def jpeg_size(data):
    i = 2
    while i < len(data):
        if data[i] != 0xFF:
            i += 1
            continue
        marker = data[i + 1]
        if marker in (0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF):
            h, w = struct.unpack(">HH", data[i + 5:i + 9])
            return w, h
        i += 2 + struct.unpack(">H", data[i + 2:i + 4])[0]
    raise ValueError("no SOF marker")

W, H = jpeg_size(jpeg)
found = {}

def png_info(value):
    if not isinstance(value, str) or len(value) < 40:
        return None
    if value.startswith("data:"):
        value = value.split(",", 1)[1]
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        return None
    if raw[:8] != b"\x89PNG\r\n\x1a\n" or raw[12:16] != b"IHDR":
        return None
    w, h, depth = struct.unpack(">IIB", raw[16:25])
    return w, h, depth

def walk(node, path):
    if isinstance(node, dict):
        for k, v in node.items():
            walk(v, path + [str(k)])
    elif isinstance(node, list):
        for i, v in enumerate(node):
            walk(v, path + [str(i)])
    else:
        info = png_info(node)
        if info:
            found["/".join(path)] = info

walk(resp, [])
for k, (w, h, d) in sorted(found.items()):
    print(f"  {k}: PNG {w}x{h} {d}-bit")
masks = {k: v for k, v in found.items() if "mask" in k.lower()}
ok = True
for lesion in ("ma", "he"):
    mine = {k: v for k, v in masks.items() if any(p.lower() == lesion or p.lower().startswith(lesion + "_") for p in k.split("/"))}
    if not mine:
        print(f"  no {lesion.upper()} mask found in the response")
        ok = False
    for k, (w, h, d) in mine.items():
        if (w, h) != (W, H):
            print(f"  {k}: {w}x{h}, expected the upload's {W}x{H}")
            ok = False
if not masks:
    print("  response keys:", list(resp)[:20])
sys.exit(0 if ok and masks else 1)
PY

step "/metrics"
curl -sS --max-time 10 "$URL/metrics" > "$WORK/metrics.txt" || die "/metrics failed"
grep -q '^redseg_' "$WORK/metrics.txt" || die "no redseg_ metrics on /metrics"
log "$(grep -c '^redseg_' "$WORK/metrics.txt") redseg_ samples, e.g.:"
grep -E '^redseg_(inference_duration_seconds_count|model_info|tiles_total)' "$WORK/metrics.txt" | head -6 || true

# --------------------------------------------------------------------------- healthcheck
step "the image's HEALTHCHECK command"
[[ ${#IMG_HEALTH[@]} -gt 0 ]] || die "no HEALTHCHECK"
in_image "${IMG_HEALTH[@]}" || die "HEALTHCHECK failed while the server is up"
log "HEALTHCHECK passes while the server is up"
kill -TERM "$SERVER_PID"
for _ in $(seq 1 120); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.25; done
if kill -0 "$SERVER_PID" 2>/dev/null; then die "the server did not stop within 30s of SIGTERM"; fi
wait "$SERVER_PID" 2>/dev/null || true
SERVER_PID=""
if in_image "${IMG_HEALTH[@]}" >/dev/null 2>&1; then die "HEALTHCHECK passes with the server stopped"; fi
log "HEALTHCHECK fails once the server is stopped, as it should"
grep -q -i -E 'traceback' "$WORK/server.log" && { tail -30 "$WORK/server.log"; die "tracebacks in the server log"; }
step "done"
