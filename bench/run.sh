#!/usr/bin/env bash
# Switchboard benchmark: ours against a fake upstream, side by side with nginx-as-proxy and LiteLLM, in one
# run, so that the figures can be compared as ratios on a noisy machine. See bench/README.md.
#
#   bash bench/run.sh                  # everything, defaults
#   OURS=0 bash bench/run.sh           # only direct / nginx-proxy / LiteLLM
#   LITELLM=0 bash bench/run.sh        # no LiteLLM (no ratios)
#   TRANSPORTS=1 SERVERS=1 ANTHROPIC=1 bash bench/run.sh
#
# Variables (defaults in brackets):
#   D [5]            seconds per wrk run;  C [32] connections for the throughput runs
#   OURS [1]         0 skips Switchboard
#   SWITCHBOARD      the switchboard executable [<repo>/.venv/bin/switchboard, else `switchboard` on PATH]
#   FLOOR [1]        1: the Python floor (floor_app.py: bare ASGI + aiohttp under uvicorn) with the python of
#                    SWITCHBOARD's venv; 0: skip
#   LITELLM [1]      1: LiteLLM from bench/.litellm-venv (created with pip if missing); 0: skip;
#                    a path: that litellm executable
#   ANTHROPIC [0]    1 adds the translated path (OpenAI chat in, Anthropic Messages upstream)
#   SURFACES [1]     1 adds rows for the other inbound surfaces to the default ours run: /v1/responses and
#                    /v1/messages, each passthrough and translated, streamed and not, and /v1/embeddings
#   TRANSPORTS [0]   1 also runs ours once per SWITCHBOARD_UPSTREAM_CLIENT=aiohttp|httpx-aiohttp|httpx
#   SERVERS [0]      1 also runs ours once per SWITCHBOARD_ASGI_SERVER=uvicorn|granian (skipped if it won't start)
#   GATEWAY [1]      1 also runs ours as a team gateway: a virtual key on every request and usage recorded, with
#                    SQLite (gw-sqlite) and, when they answer on 127.0.0.1, PostgreSQL + Redis (gw-pg-redis),
#                    each with its own memory phase; the -limits runs use a key with rpm, tpm, parallel and
#                    a budget set (never reached). AB_ROUNDS [4]: the gateway and a plain ours (on TWIN_PORT,
#                    OURS_PORT+7) are also run alternately, D s each, and the ratio of their summed rps is
#                    the verdict (drift on a shared host cancels out); 0 compares the rows above instead.  PG_URL [postgresql://postgres@127.0.0.1:5432]
#                    REDIS_URL [redis://127.0.0.1:6379/0]
#   METRICS [0]      1 also runs ours with metrics on (config.json "metrics": {"enabled": true}, tracing off) and
#                    compares it with a plain twin, interleaved as for GATEWAY (AB_ROUNDS); target >= 95%
#   ROUTE [0]        1 also runs ours with a route of one healthy target (config.json "routes") and compares
#                    asking for the route with asking for its target directly, interleaved (AB_ROUNDS); target
#                    >= 95%
#   FLOOR_AB [0]     1 also runs ours (default config) and the Python floor alternately, AB_ROUNDS rounds of D s
#                    each, for ours, ours-stream and (ANTHROPIC=1) the translated rows: their share of the
#                    floor from summed rps, drift on a shared host cancelling out; target >= 50% for the
#                    translated stream
#   LATENCY [1]      0 skips the one-connection latency runs
#   MEM [1]          0 skips the memory phase;  MEM_N [100000] requests in it (two halves)
#   MEM_TIMEOUT [150] seconds allowed per half;  GROWTH_TOL_MB [2] allowed RSS growth between halves
#   UPSTREAM_PORT [18080] PROXY_PORT [18081] LITELLM_PORT [18082] FLOOR_PORT [18083] OURS_PORT [18090]
#   MAX_TIME [1500]  seconds for the whole run after the installs; the run is stopped after that
#
# Only 127.0.0.1 is benchmarked. Everything printed is also written to bench/results/<UTC time>.txt.
set -u

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)

D=${D:-5}; C=${C:-32}
OURS=${OURS:-1}; LITELLM=${LITELLM:-1}; FLOOR=${FLOOR:-1}; ANTHROPIC=${ANTHROPIC:-0}; SURFACES=${SURFACES:-1}
TRANSPORTS=${TRANSPORTS:-0}; SERVERS=${SERVERS:-0}; LATENCY=${LATENCY:-1}; GATEWAY=${GATEWAY:-1}
METRICS=${METRICS:-0}; ROUTE=${ROUTE:-0}; FLOOR_AB=${FLOOR_AB:-0}
PG_URL=${PG_URL:-postgresql://postgres@127.0.0.1:5432}; REDIS_URL=${REDIS_URL:-redis://127.0.0.1:6379/0}
AB_ROUNDS=${AB_ROUNDS:-4}; TWIN_PORT=${TWIN_PORT:-$(( ${OURS_PORT:-18090} + 7 ))}
#: The client key every request sends (a gateway run replaces it with the virtual key it created).
BENCH_KEY=sk-bench-1234
BENCH_MASTER=sk-sb-master-bench-0123456789abcdef
MEM=${MEM:-1}; MEM_N=${MEM_N:-100000}; MEM_TIMEOUT=${MEM_TIMEOUT:-150}; GROWTH_TOL_MB=${GROWTH_TOL_MB:-2}
UPSTREAM_PORT=${UPSTREAM_PORT:-18080}; PROXY_PORT=${PROXY_PORT:-18081}
LITELLM_PORT=${LITELLM_PORT:-18082}; FLOOR_PORT=${FLOOR_PORT:-18083}; OURS_PORT=${OURS_PORT:-18090}
MAX_TIME=${MAX_TIME:-1500}
if [ -z "${SWITCHBOARD:-}" ]; then
  if [ -x "$(dirname "$0")/../.venv/bin/switchboard" ]; then SWITCHBOARD="$(dirname "$0")/../.venv/bin/switchboard"
  else SWITCHBOARD=switchboard; fi
fi

on(){ case "${1:-0}" in ""|0|no|false|off) return 1;; esac; return 0; }

# Local traffic must never go through an HTTP proxy from the environment.
export no_proxy="127.0.0.1,localhost${no_proxy:+,$no_proxy}" NO_PROXY="127.0.0.1,localhost${NO_PROXY:+,$NO_PROXY}"

# ---------------------------------------------------------------- output, temp dir, cleanup
mkdir -p "$here/results"
stamp=$(date -u +%Y%m%dT%H%M%SZ)
result="$here/results/$stamp.txt"
exec > >(tee "$result") 2>&1
tee_pid=$!

work=$(mktemp -d /tmp/switchboard-bench.XXXXXX); chmod 755 "$work"   # nginx workers run unprivileged
pids=()        # services, each started with setsid: pid == process group id
watchdog=""
bg_wrk=""      # the memory phase's wrk, which runs in the background
stop_group(){ # pid: TERM the process group, wait up to 5 s, then KILL it
  local p=$1 i
  kill -TERM -- "-$p" 2>/dev/null || return 0
  for i in $(seq 1 50); do kill -0 -- "-$p" 2>/dev/null || break; sleep 0.1; done
  kill -KILL -- "-$p" 2>/dev/null
  wait "$p" 2>/dev/null
  return 0
}
forget(){ local p keep=(); for p in "${pids[@]+"${pids[@]}"}"; do [ "$p" != "$1" ] && keep+=("$p"); done; pids=("${keep[@]+"${keep[@]}"}"); }
cleanup(){
  trap - EXIT INT TERM HUP
  local p
  for p in "${pids[@]+"${pids[@]}"}"; do stop_group "$p"; done
  [ -n "$bg_wrk" ] && kill -TERM "$bg_wrk" 2>/dev/null
  [ -n "$watchdog" ] && stop_group "$watchdog"
  rm -rf "$work"
  exec 1>&- 2>&-
  wait "$tee_pid" 2>/dev/null
}
trap cleanup EXIT
trap 'echo "run.sh: interrupted"; exit 130' INT
trap 'echo "run.sh: stopped (MAX_TIME=${MAX_TIME}s reached, or SIGTERM)"; exit 143' TERM
trap 'exit 129' HUP

t_start=$(date +%s)
say(){ printf '[%4ds] %s\n' "$(( $(date +%s) - t_start ))" "$*"; }
die(){ say "ERROR: $*"; exit 1; }
now_ms(){ echo $(( $(date +%s%N) / 1000000 )); }

# ---------------------------------------------------------------- installs
as_root(){ if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else return 1; fi; }
apt_install(){ # packages...
  say "installing $* with apt-get (log: $work/apt.log)"
  as_root timeout 900 env DEBIAN_FRONTEND=noninteractive apt-get update >>"$work/apt.log" 2>&1 \
    || { tail -5 "$work/apt.log"; return 1; }
  # RUNLEVEL=1: do not let the nginx package start a system nginx on port 80
  as_root timeout 900 env DEBIAN_FRONTEND=noninteractive RUNLEVEL=1 apt-get install -y --no-install-recommends "$@" \
    >>"$work/apt.log" 2>&1 || { tail -5 "$work/apt.log"; return 1; }
}
PATH="$PATH:/usr/sbin:/sbin"
missing=()
command -v nginx >/dev/null || missing+=(nginx-light)
command -v wrk >/dev/null || missing+=(wrk)
command -v curl >/dev/null || missing+=(curl)
if [ ${#missing[@]} -gt 0 ]; then
  # Debian 13 dropped nginx-light; plain nginx will do
  apt_install "${missing[@]}" || { [[ " ${missing[*]} " == *" nginx-light "* ]] && apt_install "${missing[@]/nginx-light/nginx}"; }
  for b in nginx wrk curl; do command -v $b >/dev/null || die "$b is missing and could not be installed"; done
fi

litellm_bin=""
if on "$LITELLM"; then
  if [ "$LITELLM" = 1 ]; then
    litellm_bin="$here/.litellm-venv/bin/litellm"
    if [ ! -x "$litellm_bin" ]; then
      say "installing LiteLLM into $here/.litellm-venv (log: $work/pip.log)"
      if ! python3 -m venv "$here/.litellm-venv" >>"$work/pip.log" 2>&1; then
        rm -rf "$here/.litellm-venv"
        apt_install python3-venv && python3 -m venv "$here/.litellm-venv" >>"$work/pip.log" 2>&1
      fi
      timeout 1800 "$here/.litellm-venv/bin/pip" install -q 'litellm[proxy]' >>"$work/pip.log" 2>&1 \
        || { tail -5 "$work/pip.log"; say "LiteLLM install failed; LiteLLM rows are skipped"; litellm_bin=""; }
    fi
  else
    litellm_bin="$LITELLM"
    [ -x "$litellm_bin" ] || { say "LITELLM=$LITELLM is not an executable; LiteLLM rows are skipped"; litellm_bin=""; }
  fi
fi
ours_bin=""
if on "$OURS"; then
  if [[ "$SWITCHBOARD" == */* ]]; then [ -x "$SWITCHBOARD" ] && ours_bin=$SWITCHBOARD
  else ours_bin=$(command -v "$SWITCHBOARD" || true); fi
  [ -n "$ours_bin" ] || say "ERROR: no switchboard executable ($SWITCHBOARD); set SWITCHBOARD= or OURS=0. Ours is skipped."
fi

# The rest is bounded: a watchdog sends us SIGTERM after MAX_TIME seconds.
setsid bash -c "sleep $MAX_TIME; kill -TERM $$" >/dev/null 2>&1 &
watchdog=$!

# ---------------------------------------------------------------- header
pyver(){ # python-exe dist -> version
  "$1" -c "import importlib.metadata as m; print(m.version('$2'))" 2>/dev/null || echo unknown
}
echo "== Switchboard benchmark $stamp"
echo "host: $(nproc) CPU ($(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo 2>/dev/null)), $(uname -sr), load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "repo: $(git -C "$repo" rev-parse --short HEAD 2>/dev/null || echo 'no commit')$( [ -n "$(git -C "$repo" status --porcelain 2>/dev/null | head -1)" ] && echo ' (uncommitted changes)')"
echo "tools: $(nginx -v 2>&1 | sed 's/.*version: //'), $(wrk --version 2>&1 | head -1 | awk '{print "wrk " $2}'), curl $(curl --version | awk 'NR==1 {print $2}')"
[ -n "$litellm_bin" ] && echo "litellm: $litellm_bin ($(pyver "$(dirname "$litellm_bin")/python" litellm))"
[ -n "$ours_bin" ] && echo "ours: $ours_bin ($(pyver "$(dirname "$ours_bin")/python" switchboard))"
echo "settings: D=${D}s C=$C ANTHROPIC=$ANTHROPIC SURFACES=$SURFACES TRANSPORTS=$TRANSPORTS SERVERS=$SERVERS LATENCY=$LATENCY MEM=$MEM MEM_N=$MEM_N"
echo

# ---------------------------------------------------------------- helpers
port_busy(){ (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
for p in "$UPSTREAM_PORT" "$PROXY_PORT" ${litellm_bin:+"$LITELLM_PORT"} ${ours_bin:+"$OURS_PORT"}; do
  port_busy "$p" && die "port $p on 127.0.0.1 is already in use (another benchmark running?); free it or set *_PORT"
done

http_code(){ curl --noproxy '*' -s -o /dev/null -w '%{http_code}' --max-time 2 "$1" 2>/dev/null; }
wait_ready(){ # url pid timeout_s -> 0 when the url answers 200; prints nothing
  local deadline=$(( $(now_ms) + $3 * 1000 ))
  while [ "$(now_ms)" -lt "$deadline" ]; do
    [ "$(http_code "$1")" = 200 ] && return 0
    kill -0 "$2" 2>/dev/null || return 1
    sleep 0.02
  done
  return 1
}
descendants(){ local c; echo "$1"; for c in $(pgrep -P "$1" 2>/dev/null); do descendants "$c"; done; }
rss_kb(){ # pid -> VmRSS of it and all its descendants, kB
  local total=0 p v
  for p in $(descendants "$1"); do
    v=$(awk '/^VmRSS:/ {print $2}' "/proc/$p/status" 2>/dev/null); total=$(( total + ${v:-0} ))
  done
  echo "$total"
}
cpu_ticks(){ # pid -> utime+stime of it and its descendants, in clock ticks
  local total=0 p v
  for p in $(descendants "$1"); do
    v=$(awk '{print $14 + $15}' "/proc/$p/stat" 2>/dev/null); total=$(( total + ${v:-0} ))
  done
  echo "$total"
}
settle(){ # pid: wait (at most 20 s) until the server is idle, i.e. done with requests wrk abandoned when it
  # stopped (a slow proxy can be busy for seconds after a run), so that they do not leak into the next run
  local pid=$1 i a b
  [ -n "$pid" ] || return 0
  a=$(cpu_ticks "$pid")
  for i in $(seq 1 100); do
    sleep 0.2; b=$(cpu_ticks "$pid")
    [ $(( b - a )) -le 2 ] && return 0   # <= 10% of a core over 200 ms (100 ticks/s)
    a=$b
  done
  say "note: server still busy after 20 s"
}
mb(){ awk -v k="$1" 'BEGIN {printf "%.1f", k / 1024}'; }

body_of(){ sed -n "s/^wrk.body = '\(.*\)'\$/\1/p" "$here/$1" | sed "s|MODEL|$2|"; }
headers_of(){ # script -> one `Name: value` line per wrk.headers entry, with the run's client key
  sed -n 's/^wrk.headers\["\([^"]*\)"\] = "\(.*\)"$/\1: \2/p' "$here/$1" | sed "s|sk-bench-1234|$BENCH_KEY|"
}

server_pid=""   # the proxy under test, if it is one of ours to watch (LiteLLM, ours)
server_log=""   # and its log, quoted when a check fails

# Result store
declare -A RPS P50 P99 ERR BAD NOTE LAT LAT99 LATERR CHECKED REF FLOORREF
rows=(); lat_rows=()

check(){ # name url model script -> 0 if the target answers a sane 2xx; prints a check line
  local name=$1 url=$2 model=$3 script=$4 code body n last h hs=()
  # the script's own headers (Content-Type and the client key; Messages adds anthropic-version)
  while IFS= read -r h; do hs+=(-H "$h"); done < <(headers_of "$script")
  code=$(curl --noproxy '*' -sN -o "$work/check.out" -w '%{http_code}' --max-time 20 "${hs[@]}" \
    --data-binary "$(body_of "$script" "$model")" "$url" 2>/dev/null)
  body=$(head -c 300 "$work/check.out" | tr '\n' ' ')
  if [ "${code:0:1}" != 2 ]; then
    CHECKED[$name]="HTTP ${code:-000 (no answer)}: ${body:0:200}"
    say "check $name: FAILED, HTTP ${code:-000}: ${body:0:200}"
    [ -n "$server_log" ] && tail -n 6 "$server_log" | cut -c1-300 | sed 's/^/    server log: /'
    return 1
  fi
  if [ "$script" = post-stream.lua ]; then
    n=$(grep -c '^data:' "$work/check.out"); last=$(grep '^data:' "$work/check.out" | tail -1)
    if [ "$n" -lt 2 ] || [ "$last" != "data: [DONE]" ]; then
      CHECKED[$name]="HTTP $code but not an SSE stream ending in [DONE] ($n data lines): ${body:0:200}"
      say "check $name: FAILED, ${CHECKED[$name]}"; return 1
    fi
    say "check $name: HTTP $code, $n SSE data events, ends with [DONE]"
  elif [ "$script" = post-responses-stream.lua ] || [ "$script" = post-messages-stream.lua ]; then
    # typed SSE: the last event must be the API's normal end (not response.failed or an error event)
    local want=response.completed; [ "$script" = post-messages-stream.lua ] && want=message_stop
    n=$(grep -c '^data:' "$work/check.out"); last=$(grep '^data:' "$work/check.out" | tail -1)
    if [ "$n" -lt 2 ] || [[ "$last" != *"\"type\":\"$want\""* ]]; then
      CHECKED[$name]="HTTP $code but not an SSE stream ending in $want ($n data lines; last: ${last:0:120}): ${body:0:200}"
      say "check $name: FAILED, ${CHECKED[$name]}"; return 1
    fi
    say "check $name: HTTP $code, $n SSE data events, ends with $want"
  elif [ "$script" != post.lua ]; then
    local key what
    case $script in
      post-responses.lua) key='"output"' what="Responses response object" ;;
      post-messages.lua) key='"content"' what="Anthropic message" ;;
      post-embeddings.lua) key='"embedding"' what="embeddings list" ;;
      *) key='' what="known answer for $script" ;;
    esac
    if [ -z "$key" ] || ! grep -q "$key" "$work/check.out"; then
      CHECKED[$name]="HTTP $code but no $what${key:+ (no $key)}: ${body:0:200}"
      say "check $name: FAILED, ${CHECKED[$name]}"; return 1
    fi
    say "check $name: HTTP $code, $what"
  else
    if ! grep -q '"choices"' "$work/check.out"; then
      CHECKED[$name]="HTTP $code but no chat.completion: ${body:0:200}"
      say "check $name: FAILED, ${CHECKED[$name]}"; return 1
    fi
    say "check $name: HTTP $code, chat.completion"
  fi
  CHECKED[$name]=ok
  return 0
}

parse_wrk(){ # file -> "rps p50_ms p99_ms non2xx socket_errors"
  awk '
    function ms(v) {
      if (v ~ /us$/) return substr(v, 1, length(v) - 2) / 1000
      if (v ~ /ms$/) return substr(v, 1, length(v) - 2) + 0
      if (v ~ /m$/)  return substr(v, 1, length(v) - 1) * 60000
      if (v ~ /s$/)  return substr(v, 1, length(v) - 1) * 1000
      return -1
    }
    /Requests\/sec/ {rps = $2}
    $1 == "50%" {p50 = ms($2)}
    $1 == "99%" {p99 = ms($2)}
    /Non-2xx or 3xx responses/ {bad = $NF}
    /Socket errors/ {gsub(",", ""); sock = $4 + $6 + $8 + $10}
    END {printf "%s %s %s %d %d\n", (rps == "" ? "-" : rps), (p50 == "" ? -1 : p50), (p99 == "" ? -1 : p99), bad, sock}
  ' "$1"
}
fmt_ms(){ awk -v v="$1" 'BEGIN { if (v < 0) print "-"; else if (v < 1) printf "%.3f ms", v; else if (v < 100) printf "%.2f ms", v; else printf "%.0f ms", v }'; }

run_wrk(){ # out-file conns duration url model script
  sed "s|MODEL|$5|; s|sk-bench-1234|$BENCH_KEY|" "$here/$6" > "$work/req.lua"
  wrk -t1 -c"$2" -d"$3s" --timeout 10s --latency -s "$work/req.lua" "$4" >"$1" 2>&1
}

bench(){ # name url model script [ref-row-for-ratio [floor-row-for-ratio]]
  local name=$1 url=$2 model=$3 script=$4 r a b c d e
  rows+=("$name"); REF[$name]=${5:-}; FLOORREF[$name]=${6:-}
  if ! check "$name" "$url" "$model" "$script"; then NOTE[$name]="NOT MEASURED: ${CHECKED[$name]}"; return 1; fi
  run_wrk "$work/warm.out" 8 1 "$url" "$model" "$script"
  settle "$server_pid"
  local t0 t1 n cpu=""
  [ -n "$server_pid" ] && t0=$(cpu_ticks "$server_pid")
  run_wrk "$work/wrk.out" "$C" "$D" "$url" "$model" "$script"
  settle "$server_pid"
  read -r a b c d e <<<"$(parse_wrk "$work/wrk.out")"
  RPS[$name]=$a; P50[$name]=$b; P99[$name]=$c; BAD[$name]=$d; ERR[$name]=$e
  r=$(printf '%.0f' "${RPS[$name]}" 2>/dev/null || echo "${RPS[$name]}")
  if [ -n "$server_pid" ]; then
    # Server CPU per request: steadier than requests/s on a busy machine (what else runs shares the cores,
    # not this process's work).
    t1=$(cpu_ticks "$server_pid"); n=$(awk '/requests in/ {print $1}' "$work/wrk.out")
    [ -n "$n" ] && [ "$n" -gt 0 ] && cpu=", server CPU $(awk -v t=$(( t1 - t0 )) -v n="$n" -v hz="$(getconf CLK_TCK)" 'BEGIN {printf "%.0f", t / hz / n * 1e6}') µs/request"
  fi
  say "$name: $r rps, p50 $(fmt_ms "${P50[$name]}"), p99 $(fmt_ms "${P99[$name]}"), non-2xx ${BAD[$name]}, socket errors ${ERR[$name]}$cpu"
  [ "${RPS[$name]}" = - ] && { NOTE[$name]="wrk failed: $(tail -2 "$work/wrk.out" | tr '\n' ' ')"; say "${NOTE[$name]}"; }
  return 0
}

latency(){ # name url model script: p50 at one connection
  local name=$1 r p50 p99 bad err
  on "$LATENCY" || return 0
  [ "${CHECKED[$name]:-}" = ok ] || return 0
  lat_rows+=("$name")
  run_wrk "$work/lat.out" 1 "$D" "$2" "$3" "$4"
  settle "$server_pid"
  read -r r p50 p99 bad err <<<"$(parse_wrk "$work/lat.out")"
  LAT[$name]=$p50; LAT99[$name]=$p99
  LATERR[$name]=$(( bad + err ))
  say "$name at 1 connection: p50 $(fmt_ms "${LAT[$name]}"), p99 $(fmt_ms "${LAT99[$name]}") ($(printf '%.0f' "$r" 2>/dev/null) rps)"
}

# ---------------------------------------------------------------- fake upstream and nginx-proxy
for f in upstream proxy; do
  sed "s|@WORK@|$work|g; s|@UPSTREAM_PORT@|$UPSTREAM_PORT|g; s|@PROXY_PORT@|$PROXY_PORT|g" \
    "$here/$f-nginx.conf" > "$work/$f.conf"
done
cp "$here/stream.txt" "$here/anthropic-stream.txt" "$here/responses-stream.txt" "$work/"; chmod 644 "$work"/*.txt
setsid nginx -e "$work/upstream-error.log" -c "$work/upstream.conf" >"$work/upstream.out" 2>&1 & up_pid=$!; pids+=("$up_pid")
setsid nginx -e "$work/proxy-nginx-error.log" -c "$work/proxy.conf" >"$work/proxy.out" 2>&1 & px_pid=$!; pids+=("$px_pid")
wait_ready "http://127.0.0.1:$UPSTREAM_PORT/v1/models" "$up_pid" 10 || { cat "$work/upstream.out"; die "fake upstream did not start"; }
wait_ready "http://127.0.0.1:$PROXY_PORT/v1/models" "$px_pid" 10 || { cat "$work/proxy.out"; die "nginx-proxy did not start"; }
say "fake upstream on :$UPSTREAM_PORT, nginx-proxy on :$PROXY_PORT"

U="http://127.0.0.1:$UPSTREAM_PORT"; X="http://127.0.0.1:$PROXY_PORT"
bench direct             "$U/v1/chat/completions"   gpt-bench post.lua
bench direct-stream      "$U/s/v1/chat/completions" gpt-bench post-stream.lua
bench nginx-proxy        "$X/v1/chat/completions"   gpt-bench post.lua
bench nginx-proxy-stream "$X/s/v1/chat/completions" gpt-bench post-stream.lua
latency direct             "$U/v1/chat/completions"   gpt-bench post.lua
latency direct-stream      "$U/s/v1/chat/completions" gpt-bench post-stream.lua
latency nginx-proxy        "$X/v1/chat/completions"   gpt-bench post.lua
latency nginx-proxy-stream "$X/s/v1/chat/completions" gpt-bench post-stream.lua

# ---------------------------------------------------------------- the Python floor
floor_py=""
[ -n "$ours_bin" ] && floor_py="$(cd "$(dirname "$ours_bin")" && pwd)/python"
F="http://127.0.0.1:$FLOOR_PORT"
start_floor(){ # -> fl_pid; 1 if it did not start
  (cd "$here" && UPSTREAM="$U" exec setsid "$floor_py" -m uvicorn --no-access-log --log-level warning \
     --loop uvloop --http httptools floor_app:app --host 127.0.0.1 --port "$FLOOR_PORT") >"$work/floor.log" 2>&1 &
  fl_pid=$!; pids+=("$fl_pid")
  wait_ready "$F/v1/models" "$fl_pid" 30
}
if on "$FLOOR" && [ -n "$floor_py" ] && [ -x "$floor_py" ]; then
  start_floor; ok=$?; server_pid=$fl_pid; server_log="$work/floor.log"
  if [ "$ok" = 0 ]; then
    bench python-floor        "$F/v1/chat/completions"   gpt-bench post.lua
    bench python-floor-stream "$F/s/v1/chat/completions" gpt-bench post-stream.lua
    latency python-floor        "$F/v1/chat/completions"   gpt-bench post.lua
    latency python-floor-stream "$F/s/v1/chat/completions" gpt-bench post-stream.lua
  else
    say "the Python floor did not start: $(tail -3 "$work/floor.log" | tr '\n' ' ')"
  fi
  stop_group "$fl_pid"; forget "$fl_pid"; server_pid=""; server_log=""
fi

# ---------------------------------------------------------------- LiteLLM
litellm_rss=""; litellm_note=""
if [ -n "$litellm_bin" ]; then
  sed "s|@UPSTREAM_PORT@|$UPSTREAM_PORT|g" "$here/litellm.yaml" > "$work/litellm.yaml"
  t0=$(now_ms)
  LITELLM_LOCAL_MODEL_COST_MAP=True LITELLM_LOG=ERROR setsid "$litellm_bin" --config "$work/litellm.yaml" \
    --host 127.0.0.1 --port "$LITELLM_PORT" --num_workers 1 >"$work/litellm.log" 2>&1 &
  ll_pid=$!; pids+=("$ll_pid"); server_pid=$ll_pid; server_log="$work/litellm.log"
  if wait_ready "http://127.0.0.1:$LITELLM_PORT/health/liveliness" "$ll_pid" 180; then
    say "litellm up in $(( $(now_ms) - t0 )) ms (RSS $(mb "$(rss_kb "$ll_pid")") MB)"
    L="http://127.0.0.1:$LITELLM_PORT/v1/chat/completions"
    bench litellm        "$L" gpt-bench        post.lua
    bench litellm-stream "$L" gpt-bench-stream post-stream.lua
    if on "$ANTHROPIC"; then
      bench litellm-ant        "$L" claude-bench        post.lua
      bench litellm-ant-stream "$L" claude-bench-stream post-stream.lua
    fi
    latency litellm        "$L" gpt-bench        post.lua
    latency litellm-stream "$L" gpt-bench-stream post-stream.lua
    if on "$ANTHROPIC"; then
      latency litellm-ant        "$L" claude-bench        post.lua
      latency litellm-ant-stream "$L" claude-bench-stream post-stream.lua
    fi
    litellm_rss=$(rss_kb "$ll_pid")
    say "litellm RSS after its runs: $(mb "$litellm_rss") MB"
  else
    litellm_note="LiteLLM did not start: $(tail -3 "$work/litellm.log" | tr '\n' ' ')"
    say "$litellm_note"
  fi
  stop_group "$ll_pid"; forget "$ll_pid"; server_pid=""; server_log=""
fi

# ---------------------------------------------------------------- ours
declare -A OURS_INFO
ours_primary_pid=""
mem_lines=()
mem_verdict=""

start_ours(){ # label env-assignments... ; sets ours_pid, returns 1 if it did not start
  local label=$1 home="$work/home-$1" t0 ms
  shift
  mkdir -p "$home"
  cat > "$home/models.json" <<EOF
{"providers": {
  "bench": {"baseUrl": "http://127.0.0.1:$UPSTREAM_PORT/v1", "api": "openai-completions", "apiKey": "sk-upstream", "models": [{"id": "gpt-bench"}]},
  "bench-stream": {"baseUrl": "http://127.0.0.1:$UPSTREAM_PORT/s/v1", "api": "openai-completions", "apiKey": "sk-upstream", "models": [{"id": "gpt-bench"}]},
  "bench-ant": {"baseUrl": "http://127.0.0.1:$UPSTREAM_PORT", "api": "anthropic-messages", "apiKey": "sk-ant-upstream", "models": [{"id": "claude-bench"}]},
  "bench-ant-stream": {"baseUrl": "http://127.0.0.1:$UPSTREAM_PORT/s", "api": "anthropic-messages", "apiKey": "sk-ant-upstream", "models": [{"id": "claude-bench"}]},
  "bench-resp": {"baseUrl": "http://127.0.0.1:$UPSTREAM_PORT/v1", "api": "openai-responses", "apiKey": "sk-upstream", "models": [{"id": "gpt-bench"}]},
  "bench-resp-stream": {"baseUrl": "http://127.0.0.1:$UPSTREAM_PORT/s/v1", "api": "openai-responses", "apiKey": "sk-upstream", "models": [{"id": "gpt-bench"}]},
  "bench-emb": {"baseUrl": "http://127.0.0.1:$UPSTREAM_PORT/v1", "api": "openai-completions", "apiKey": "sk-upstream", "models": [{"id": "text-embedding-bench", "kind": "embedding"}]}}}
EOF
  # OURS_CONFIG: a config.json for this run (the metrics run's).
  [ -n "${OURS_CONFIG:-}" ] && printf '%s\n' "$OURS_CONFIG" > "$home/config.json"
  t0=$(now_ms)
  env -u SWITCHBOARD_UPSTREAM_CLIENT -u SWITCHBOARD_ASGI_SERVER SWITCHBOARD_HOME="$home" "$@" \
    setsid "$ours_bin" serve --host 127.0.0.1 --port "$OURS_PORT" >"$work/ours-$label.log" 2>&1 &
  ours_pid=$!; pids+=("$ours_pid"); server_pid=$ours_pid; server_log="$work/ours-$label.log"
  if ! wait_ready "http://127.0.0.1:$OURS_PORT/healthz" "$ours_pid" 60; then
    OURS_INFO[$label]="did not start: $(tail -3 "$work/ours-$label.log" | tr '\n' ' ' | cut -c1-400)"
    say "ours[$label] ${OURS_INFO[$label]}"
    stop_group "$ours_pid"; forget "$ours_pid"
    return 1
  fi
  ms=$(( $(now_ms) - t0 ))
  OURS_INFO[$label]="ready in $ms ms, idle RSS $(mb "$(rss_kb "$ours_pid")") MB"
  say "ours[$label] (${*:-defaults}): ${OURS_INFO[$label]}"
  sed -n '1,3p' "$work/ours-$label.log" | sed 's/^/    log: /'
  return 0
}

ours_targets(){ # suffix ; runs the throughput (and one-connection) rows against the running ours
  local s=$1 O="http://127.0.0.1:$OURS_PORT/v1/chat/completions"
  bench "ours$s"        "$O" bench/gpt-bench         post.lua        litellm python-floor
  bench "ours-stream$s" "$O" bench-stream/gpt-bench  post-stream.lua litellm-stream python-floor-stream
  if on "$ANTHROPIC" && [ -z "$s" ]; then
    bench "ours-ant$s"        "$O" bench-ant/claude-bench        post.lua        litellm-ant python-floor
    bench "ours-ant-stream$s" "$O" bench-ant-stream/claude-bench post-stream.lua litellm-ant-stream python-floor-stream
  fi
  [ -z "$s" ] && on "$SURFACES" && surface_targets bench
  latency "ours$s"        "$O" bench/gpt-bench        post.lua
  [ -z "$s" ] || return 0
  latency "ours-stream$s" "$O" bench-stream/gpt-bench post-stream.lua
  if on "$ANTHROPIC"; then
    latency "ours-ant$s"        "$O" bench-ant/claude-bench        post.lua
    latency "ours-ant-stream$s" "$O" bench-ant-stream/claude-bench post-stream.lua
  fi
  on "$SURFACES" && surface_targets latency
  return 0
}

surface_targets(){ # bench|latency: the rows of the other inbound surfaces (SURFACES=1; default ours run only).
  # Passthrough: the upstream speaks the surface's API and the bytes are relayed; translated (-tr): request
  # and answer go through the canonical model (Responses in, Anthropic Messages upstream; Messages in,
  # OpenAI chat upstream). "of floor" compares with the floor's chat passthrough, the same for every surface.
  local how=$1 R="http://127.0.0.1:$OURS_PORT/v1/responses" M="http://127.0.0.1:$OURS_PORT/v1/messages"
  local E="http://127.0.0.1:$OURS_PORT/v1/embeddings" row url model script floor
  while read -r row url model script <&3; do
    if [ "$how" = bench ]; then
      floor=python-floor; [[ "$script" == *stream* ]] && floor=python-floor-stream
      bench "$row" "$url" "$model" "$script" "" "$floor"
    else
      latency "$row" "$url" "$model" "$script"
    fi
  done 3<<ROWS
ours-resp           $R bench-resp/gpt-bench           post-responses.lua
ours-resp-stream    $R bench-resp-stream/gpt-bench    post-responses-stream.lua
ours-resp-tr        $R bench-ant/claude-bench         post-responses.lua
ours-resp-tr-stream $R bench-ant-stream/claude-bench  post-responses-stream.lua
ours-msg            $M bench-ant/claude-bench         post-messages.lua
ours-msg-stream     $M bench-ant-stream/claude-bench  post-messages-stream.lua
ours-msg-tr         $M bench/gpt-bench                post-messages.lua
ours-msg-tr-stream  $M bench-stream/gpt-bench         post-messages-stream.lua
ours-emb            $E bench-emb/text-embedding-bench post-embeddings.lua
ROWS
}

mem_half(){ # pid n label -> runs exactly n non-streaming requests at -c$C; prints a line
  local pid=$1 n=$2 label=$3 w t0 ms line
  sed "s|MODEL|bench/gpt-bench|; s|sk-bench-1234|$BENCH_KEY|" "$here/count.lua" > "$work/count.lua"
  rm -f "$work/count.done"
  t0=$(now_ms)
  BENCH_N=$n BENCH_DONE_FILE="$work/count.done" \
    wrk -t1 -c"$C" -d"${MEM_TIMEOUT}s" --timeout 10s -s "$work/count.lua" \
    "http://127.0.0.1:$OURS_PORT/v1/chat/completions" >"$work/count.out" 2>&1 &
  w=$!; bg_wrk=$w
  # wrk's main thread sleeps for the whole -d even after the script stopped its thread: interrupt it.
  while kill -0 "$w" 2>/dev/null; do
    [ -e "$work/count.done" ] && { kill -INT "$w" 2>/dev/null; break; }
    sleep 0.05
  done
  wait "$w" 2>/dev/null; bg_wrk=""
  ms=$(( $(now_ms) - t0 ))
  line=$(grep '^count:' "$work/count.out" || echo "count: wrk failed: $(tail -2 "$work/count.out" | tr '\n' ' ')")
  MEM_ANSWERED=$(echo "$line" | sed -n 's/.*answered=\([0-9]*\).*/\1/p'); MEM_ANSWERED=${MEM_ANSWERED:-0}
  MEM_BAD=$(echo "$line" | sed -n 's/.*non2xx=\([0-9]*\).*/\1/p'); MEM_BAD=${MEM_BAD:-0}
  say "$label: ${line#count: } in $ms ms ($(awk -v n="$MEM_ANSWERED" -v ms="$ms" 'BEGIN {printf "%.0f", ms ? n * 1000 / ms : 0}') rps)"
}

memory_phase(){ # pid
  local pid=$1 half=$(( MEM_N / 2 )) before r1 r2 a1 a2 b1 b2 growth
  before=$(rss_kb "$pid")
  say "memory phase: $MEM_N non-streaming requests in two halves of $half (-c$C); RSS before: $(mb "$before") MB"
  mem_half "$pid" "$half" "first half";  a1=$MEM_ANSWERED; b1=$MEM_BAD; r1=$(rss_kb "$pid")
  say "RSS after first $half: $(mb "$r1") MB"
  mem_half "$pid" "$(( MEM_N - half ))" "second half"; a2=$MEM_ANSWERED; b2=$MEM_BAD; r2=$(rss_kb "$pid")
  say "RSS after $MEM_N: $(mb "$r2") MB"
  growth=$(( r2 - r1 ))
  mem_lines+=("ours RSS before: $(mb "$before") MB; after $half: $(mb "$r1") MB; after $MEM_N: $(mb "$r2") MB; growth over the last $(( MEM_N - half )): $(awk -v k="$growth" 'BEGIN {printf "%+.1f", k / 1024}') MB")
  mem_lines+=("requests answered: $a1 + $a2 of $MEM_N, non-2xx: $(( b1 + b2 ))")
  if [ $(( a1 + a2 )) -ne "$MEM_N" ] || [ $(( b1 + b2 )) -ne 0 ]; then
    mem_verdict="INVALID (not all $MEM_N requests answered 2xx)"
  else
    mem_verdict=$(awk -v r="$r2" -v g="$growth" -v tol="$GROWTH_TOL_MB" 'BEGIN {
      ok = (r / 1024 < 120) && (g / 1024 <= tol)
      printf "%s (RSS %.1f MB, target < 120 MB; growth %+.1f MB, allowed <= %s MB)", ok ? "PASS" : "FAIL", r / 1024, g / 1024, tol }')
  fi
}

declare -A FLOOR_AB_R; floor_ab_rows=()
floor_ab(){ # row ours-url ours-model script floor-row floor-url: AB_ROUNDS alternating runs of ours and the
  # floor (D s each, A B then B A) -> FLOOR_AB_R[row] = ours/floor rps summed over the rounds
  local row=$1 url=$2 model=$3 script=$4 frow=$5 furl=$6 i a b sa=0 sb=0
  for i in $(seq 1 "$AB_ROUNDS"); do
    if (( i % 2 )); then
      run_wrk "$work/fab-floor.out" "$C" "$D" "$furl" gpt-bench "$script"; settle "$fl_pid"
      run_wrk "$work/fab-ours.out" "$C" "$D" "$url" "$model" "$script"; settle "$ours_pid"
    else
      run_wrk "$work/fab-ours.out" "$C" "$D" "$url" "$model" "$script"; settle "$ours_pid"
      run_wrk "$work/fab-floor.out" "$C" "$D" "$furl" gpt-bench "$script"; settle "$fl_pid"
    fi
    a=$(parse_wrk "$work/fab-ours.out" | awk '{print $1}'); b=$(parse_wrk "$work/fab-floor.out" | awk '{print $1}')
    sa=$(awk -v x="$sa" -v y="$a" 'BEGIN {print x + y}'); sb=$(awk -v x="$sb" -v y="$b" 'BEGIN {print x + y}')
  done
  FLOOR_AB_R[$row]=$(awk -v a="$sa" -v b="$sb" 'BEGIN {printf "%.3f", (b > 0) ? a / b : 0}')
  floor_ab_rows+=("$row:$frow")
  say "interleaved $row of $frow: ${FLOOR_AB_R[$row]} over $AB_ROUNDS rounds ($(printf '%.0f' "$sa") against $(printf '%.0f' "$sb") rps summed)"
}

ours_failed=0
on "$OURS" && [ -z "$ours_bin" ] && ours_failed=1
if [ -n "$ours_bin" ]; then
  if start_ours default; then
    ours_targets ""
    if on "$FLOOR_AB" && [ "$AB_ROUNDS" -gt 0 ] && [ -n "$floor_py" ]; then
      if start_floor; then
        O="http://127.0.0.1:$OURS_PORT/v1/chat/completions"
        floor_ab ours "$O" bench/gpt-bench post.lua python-floor "$F/v1/chat/completions"
        floor_ab ours-stream "$O" bench-stream/gpt-bench post-stream.lua python-floor-stream "$F/s/v1/chat/completions"
        if on "$ANTHROPIC"; then
          floor_ab ours-ant "$O" bench-ant/claude-bench post.lua python-floor "$F/v1/chat/completions"
          floor_ab ours-ant-stream "$O" bench-ant-stream/claude-bench post-stream.lua python-floor-stream \
            "$F/s/v1/chat/completions"
        fi
        stop_group "$fl_pid"; forget "$fl_pid"
      else
        say "FLOOR_AB: the Python floor did not start: $(tail -3 "$work/floor.log" | tr '\n' ' ')"
      fi
    fi
    if on "$MEM" && [ "${CHECKED[ours]:-}" = ok ]; then memory_phase "$ours_pid"
    elif on "$MEM"; then mem_verdict="not run (ours failed its check)"; fi
    stop_group "$ours_pid"; forget "$ours_pid"
  else
    ours_failed=1
  fi
  # Extra runs, after the default one: each ASGI server and/or each upstream client (the cross product if both).
  servers=(""); transports=(""); variants=()
  on "$SERVERS" && servers=(uvicorn granian)
  on "$TRANSPORTS" && transports=(aiohttp httpx-aiohttp httpx)
  for s in "${servers[@]}"; do
    for t in "${transports[@]}"; do
      v="${s:+SWITCHBOARD_ASGI_SERVER=$s}${s:+${t:+ }}${t:+SWITCHBOARD_UPSTREAM_CLIENT=$t}"
      [ -n "$v" ] && variants+=("$v")
    done
  done
  for v in "${variants[@]+"${variants[@]}"}"; do
    label=$(echo "$v" | sed 's/SWITCHBOARD_ASGI_SERVER=//; s/SWITCHBOARD_UPSTREAM_CLIENT=//; s/ /,/g')
    # shellcheck disable=SC2086
    if start_ours "$label" $v; then
      if [[ "$v" == *ASGI_SERVER=granian* ]] && ! grep -qs granian $(descendants "$ours_pid" | sed 's|.*|/proc/&/maps|'); then
        # it started, but not on granian: measuring it would only repeat the default server under another name
        OURS_INFO[$label]+="; skipped: granian is not loaded, so the server ignores SWITCHBOARD_ASGI_SERVER"
        say "ours[$label]: skipped, granian is not loaded in the server (it ignores SWITCHBOARD_ASGI_SERVER)"
        k="ours[$label]"; rows+=("$k"); NOTE[$k]="skipped: the server ignores SWITCHBOARD_ASGI_SERVER=granian"
      else
        ours_targets "[$label]"
      fi
      stop_group "$ours_pid"; forget "$ours_pid"
    else
      k="ours[$label]"; rows+=("$k"); NOTE[$k]="skipped: ${OURS_INFO[$label]}"
    fi
  done
fi

# ---------------------------------------------------------------- ours as a team gateway
gw_labels=(); gw_mem=()
gateway_key(){ # spec-json -> sets BENCH_KEY to a new virtual key of the running ours
  local out
  out=$(curl --noproxy '*' -s --max-time 20 -H "Authorization: Bearer $BENCH_MASTER" -H 'Content-Type: application/json' \
    --data-binary "$1" "http://127.0.0.1:$OURS_PORT/admin/v1/keys")
  BENCH_KEY=$(printf '%s' "$out" | "$floor_py" -c 'import json, sys; print(json.load(sys.stdin)["key"])' 2>/dev/null) || BENCH_KEY=""
  [ -n "$BENCH_KEY" ] || { say "could not create a virtual key: ${out:0:200}"; BENCH_KEY=sk-bench-1234; return 1; }
}
#: A key with every limit set (none reached): what checking rpm, tpm, parallel and a budget costs.
LIMITED='{"name": "bench", "budget": 1000000, "rpm": 100000000, "tpm": 100000000000, "parallel": 100000}'
declare -A AB
twin_pid=""
start_twin(){ # a plain ours (no gateway) beside the gateway one, for the interleaved comparison
  local home="$work/home-twin"
  mkdir -p "$home"; cp "$work/home-default/models.json" "$home/"
  env -u SWITCHBOARD_UPSTREAM_CLIENT -u SWITCHBOARD_ASGI_SERVER SWITCHBOARD_HOME="$home" \
    setsid "$ours_bin" serve --host 127.0.0.1 --port "$TWIN_PORT" >"$work/twin.log" 2>&1 &
  twin_pid=$!; pids+=("$twin_pid")
  wait_ready "http://127.0.0.1:$TWIN_PORT/healthz" "$twin_pid" 60
}
ab(){ # key gw-url plain-url model script [plain-model]: AB_ROUNDS alternating runs of each (D s) -> AB[key] =
  # gateway/plain rps; plain-model (default: model) is what the plain runs ask for
  local i a b sa=0 sb=0
  for i in $(seq 1 "$AB_ROUNDS"); do
    # A B, then B A: a drift within a round (the host's clock, a neighbour) favours neither side.
    if (( i % 2 )); then
      run_wrk "$work/ab-plain.out" "$C" "$D" "$3" "${6:-$4}" "$5"; settle "$twin_pid"
      run_wrk "$work/ab-gw.out" "$C" "$D" "$2" "$4" "$5"; settle "$ours_pid"
    else
      run_wrk "$work/ab-gw.out" "$C" "$D" "$2" "$4" "$5"; settle "$ours_pid"
      run_wrk "$work/ab-plain.out" "$C" "$D" "$3" "${6:-$4}" "$5"; settle "$twin_pid"
    fi
    a=$(parse_wrk "$work/ab-gw.out" | awk '{print $1}'); b=$(parse_wrk "$work/ab-plain.out" | awk '{print $1}')
    sa=$(awk -v x="$sa" -v y="$a" 'BEGIN {print x + y}'); sb=$(awk -v x="$sb" -v y="$b" 'BEGIN {print x + y}')
  done
  AB[$1]=$(awk -v a="$sa" -v b="$sb" 'BEGIN {printf "%.3f", (b > 0) ? a / b : 0}')
  say "interleaved $1: gateway/plain = ${AB[$1]} over $AB_ROUNDS rounds (gateway $(printf '%.0f' "$sa"), plain $(printf '%.0f' "$sb") rps summed)"
}

gateway_run(){ # label key-spec-json mem(0|1) env-assignments...
  local label=$1 spec=$2 mem=$3; shift 3
  if start_ours "$label" SWITCHBOARD_MASTER_KEY="$BENCH_MASTER" "$@"; then
    if gateway_key "$spec"; then
      gw_labels+=("$label")
      bench "ours[$label]"        "http://127.0.0.1:$OURS_PORT/v1/chat/completions" bench/gpt-bench        post.lua        ours python-floor
      bench "ours-stream[$label]" "http://127.0.0.1:$OURS_PORT/v1/chat/completions" bench-stream/gpt-bench post-stream.lua ours-stream python-floor-stream
      latency "ours[$label]" "http://127.0.0.1:$OURS_PORT/v1/chat/completions" bench/gpt-bench post.lua
      if [ "$AB_ROUNDS" -gt 0 ] && [[ "$label" != *-limits ]] && start_twin; then
        ab "ours[$label]" "http://127.0.0.1:$OURS_PORT/v1/chat/completions" "http://127.0.0.1:$TWIN_PORT/v1/chat/completions" bench/gpt-bench post.lua
        ab "ours-stream[$label]" "http://127.0.0.1:$OURS_PORT/v1/chat/completions" "http://127.0.0.1:$TWIN_PORT/v1/chat/completions" bench-stream/gpt-bench post-stream.lua
      fi
      [ -n "$twin_pid" ] && { stop_group "$twin_pid"; forget "$twin_pid"; twin_pid=""; }
      if on "$MEM" && on "$mem" && [ "${CHECKED[ours[$label]]:-}" = ok ]; then
        local saved=$mem_verdict
        mem_lines+=("ours[$label]:")
        memory_phase "$ours_pid"; gw_mem+=("memory of ours[$label] after $MEM_N requests: $mem_verdict")
        mem_verdict=$saved
      fi
      curl --noproxy '*' -s --max-time 20 -H "Authorization: Bearer $BENCH_MASTER" \
        "http://127.0.0.1:$OURS_PORT/admin/v1/usage?group_by=key&since=1d" > "$work/usage-$label.json"
      say "ours[$label] ledger: $(head -c 300 "$work/usage-$label.json")"
    fi
    BENCH_KEY=sk-bench-1234
    stop_group "$ours_pid"; forget "$ours_pid"
  else
    k="ours[$label]"; rows+=("$k"); NOTE[$k]="skipped: ${OURS_INFO[$label]}"
  fi
}
if [ -n "$ours_bin" ] && on "$GATEWAY"; then
  gateway_run gw-sqlite '{"name": "bench"}' 1
  gateway_run gw-sqlite-limits "$LIMITED" 0
  if (exec 3<>/dev/tcp/127.0.0.1/5432) 2>/dev/null && (exec 3<>/dev/tcp/127.0.0.1/6379) 2>/dev/null; then
    gw_db="sb_bench_$$"
    "$floor_py" -c "import asyncio, asyncpg
async def main():
    c = await asyncpg.connect('$PG_URL/postgres'); await c.execute('DROP DATABASE IF EXISTS $gw_db WITH (FORCE)'); await c.execute('CREATE DATABASE $gw_db'); await c.close()
asyncio.run(main())" && {
      gateway_run gw-pg-redis '{"name": "bench"}' 1 SWITCHBOARD_DATABASE_URL="$PG_URL/$gw_db" SWITCHBOARD_REDIS_URL="$REDIS_URL"
      gateway_run gw-pg-redis-limits "$LIMITED" 0 SWITCHBOARD_DATABASE_URL="$PG_URL/$gw_db" SWITCHBOARD_REDIS_URL="$REDIS_URL"
    }
  else
    say "gw-pg-redis skipped: PostgreSQL (5432) or Redis (6379) does not answer on 127.0.0.1"
  fi
fi

# ---------------------------------------------------------------- ours with metrics on (METRICS=1)
metrics_labels=()
if [ -n "$ours_bin" ] && on "$METRICS"; then
  if OURS_CONFIG='{"metrics": {"enabled": true}}' start_ours metrics; then
    M="http://127.0.0.1:$OURS_PORT/v1/chat/completions"
    bench "ours[metrics]"        "$M" bench/gpt-bench        post.lua        ours python-floor
    bench "ours-stream[metrics]" "$M" bench-stream/gpt-bench post-stream.lua ours-stream python-floor-stream
    if [ "$AB_ROUNDS" -gt 0 ] && start_twin; then
      T="http://127.0.0.1:$TWIN_PORT/v1/chat/completions"
      ab "ours[metrics]" "$M" "$T" bench/gpt-bench post.lua
      ab "ours-stream[metrics]" "$M" "$T" bench-stream/gpt-bench post-stream.lua
      metrics_labels+=("ours[metrics]" "ours-stream[metrics]")
    fi
    [ -n "$twin_pid" ] && { stop_group "$twin_pid"; forget "$twin_pid"; twin_pid=""; }
    say "ours[metrics] /metrics: $(curl --noproxy '*' -s --max-time 20 "http://127.0.0.1:$OURS_PORT/metrics" \
      | grep -c '^switchboard_') series lines"
    stop_group "$ours_pid"; forget "$ours_pid"
  else
    k="ours[metrics]"; rows+=("$k"); NOTE[$k]="skipped: ${OURS_INFO[metrics]}"
  fi
fi

# ---------------------------------------------------------------- a route of one healthy target (ROUTE=1)
if [ -n "$ours_bin" ] && on "$ROUTE" && [ "$AB_ROUNDS" -gt 0 ]; then
  if OURS_CONFIG='{"routes": {"bench-route": {"targets": ["bench/gpt-bench"]},
      "bench-route-stream": {"targets": ["bench-stream/gpt-bench"]}}}' start_ours route; then
    R="http://127.0.0.1:$OURS_PORT/v1/chat/completions"
    ab "ours[route]" "$R" "$R" bench-route post.lua bench/gpt-bench
    ab "ours-stream[route]" "$R" "$R" bench-route-stream post-stream.lua bench-stream/gpt-bench
    metrics_labels+=("ours[route]" "ours-stream[route]")
    stop_group "$ours_pid"; forget "$ours_pid"
  fi
fi

# ---------------------------------------------------------------- report
echo
echo "== Throughput: wrk -t1 -c$C, ${D}s per target after a 1 s warm-up at -c8 (rps: requests/s; x litellm: ours/litellm rps)"
printf '%-34s %10s %10s %10s %10s %10s  %-10s %s\n' target rps p50 p99 non-2xx sock-err "x litellm" "of floor"
flagged=0
clean(){ [ -n "${RPS[$1]:-}" ] && [ "${RPS[$1]}" != - ] && [ "${BAD[$1]:-1}" = 0 ] && [ "${ERR[$1]:-1}" = 0 ]; }
ratio(){ clean "$1" && clean "$2" && awk -v a="${RPS[$1]}" -v b="${RPS[$2]}" 'BEGIN {printf "%.1f", a / b}'; }
for r in "${rows[@]}"; do
  if [ -n "${NOTE[$r]:-}" ] && [ -z "${RPS[$r]:-}" ]; then printf '%-34s %s\n' "$r" "${NOTE[$r]}"; continue; fi
  mark=""; clean "$r" || { mark="*"; flagged=1; }
  x=""; [ -n "${REF[$r]:-}" ] && x=$(ratio "$r" "${REF[$r]}") && x="${x}x"
  f=""; [ -n "${FLOORREF[$r]:-}" ] && clean "$r" && clean "${FLOORREF[$r]}" \
    && f=$(awk -v a="${RPS[$r]}" -v b="${RPS[${FLOORREF[$r]}]}" 'BEGIN {printf "%.0f%%", 100 * a / b}')
  printf '%-34s %10s %10s %10s %10s %10s  %-10s %s\n' "$r" "$(printf '%.0f' "${RPS[$r]}" 2>/dev/null || echo -)$mark" \
    "$(fmt_ms "${P50[$r]}")" "$(fmt_ms "${P99[$r]}")" "${BAD[$r]}" "${ERR[$r]}" "$x" "$f"
done
[ "$flagged" = 1 ] && echo "* this row had failed responses or socket errors: its rps counts them and is not comparable"
[ -n "$litellm_note" ] && echo "$litellm_note"

echo
echo "== Ratios ours/litellm (same run)"
verdicts=()
target_ratio(){ # ours-row litellm-row target label
  local x; x=$(ratio "$1" "$2")
  if [ -n "$x" ]; then
    local v; v=$(awk -v x="$x" -v t="$3" 'BEGIN {print (x >= t) ? "PASS" : "FAIL"}')
    printf '%-22s %8sx   target >= %sx   %s\n' "$4" "$x" "$3" "$v"
    [ -n "$3" ] && verdicts+=("$4: $v (${x}x, target >= $3x)")
  else
    printf '%-22s %8s\n' "$4" "n/a (a row is missing or had errors)"
    verdicts+=("$4: n/a")
  fi
}
if [ -n "${RPS[litellm]:-}" ] && [ -n "$ours_bin" ]; then
  target_ratio ours litellm 20 "non-streaming"
  target_ratio ours-stream litellm-stream 50 "stream (66 events)"
  if on "$ANTHROPIC"; then
    x=$(ratio ours-ant litellm-ant); printf '%-22s %8s\n' "anthropic" "${x:+${x}x}${x:-n/a}"
    x=$(ratio ours-ant-stream litellm-ant-stream); printf '%-22s %8s\n' "anthropic stream" "${x:+${x}x}${x:-n/a}"
  fi
else
  echo "n/a (needs both LiteLLM and ours)"
fi

for pair in "${floor_ab_rows[@]+"${floor_ab_rows[@]}"}"; do
  r=${pair%%:*}; f=${pair#*:}
  if [ "$r" = ours-ant-stream ]; then
    verdicts+=("$r of $f (interleaved): $(awk -v x="${FLOOR_AB_R[$r]}" 'BEGIN {
      printf "%s (%.0f%%, target >= 50%%)", (x >= 0.5) ? "PASS" : "FAIL", 100 * x }')")
  else
    verdicts+=("$r of $f (interleaved): $(awk -v x="${FLOOR_AB_R[$r]}" 'BEGIN {printf "%.0f%%", 100 * x}')")
  fi
done
for v in "${gw_mem[@]+"${gw_mem[@]}"}"; do verdicts+=("$v"); done
for g in "${metrics_labels[@]+"${metrics_labels[@]}"}"; do
  verdicts+=("$g of plain (interleaved): $(awk -v r="${AB[$g]:-0}" 'BEGIN {
    printf "%s (%.0f%%, target >= 95%%)", (r >= 0.95) ? "PASS" : "FAIL", 100 * r }')")
done
for label in "${gw_labels[@]+"${gw_labels[@]}"}"; do
  for pair in "ours[$label]:ours" "ours-stream[$label]:ours-stream"; do
    g=${pair%%:*}; p=${pair#*:}
    if [ -n "${AB[$g]:-}" ]; then
      if [[ "$label" == *-limits ]]; then
        verdicts+=("$g of plain (interleaved): $(awk -v r="${AB[$g]}" 'BEGIN {printf "%.0f%% (every limit checked; no target)", 100 * r}')")
      else
        verdicts+=("$g of plain (interleaved): $(awk -v r="${AB[$g]}" 'BEGIN {
          printf "%s (%.0f%%, target >= 80%%)", (r >= 0.8) ? "PASS" : "FAIL", 100 * r }')")
      fi
    elif clean "$g" && clean "$p"; then
      if [[ "$label" == *-limits ]]; then
        verdicts+=("$g of plain $p: $(awk -v a="${RPS[$g]}" -v b="${RPS[$p]}" 'BEGIN {printf "%.0f%% (every limit checked; no target)", 100 * a / b}')")
      else
        verdicts+=("$g of plain $p: $(awk -v a="${RPS[$g]}" -v b="${RPS[$p]}" 'BEGIN {
          printf "%s (%.0f%%, target >= 80%%)", (a / b >= 0.8) ? "PASS" : "FAIL", 100 * a / b }')")
      fi
    else
      verdicts+=("$g of plain $p: n/a")
    fi
  done
done

if on "$LATENCY"; then
  echo
  echo "== Latency at one connection: wrk -t1 -c1, ${D}s (added = p50 - p50 of direct, or of direct-stream for stream rows)"
  printf '%-34s %10s %10s %12s\n' target p50 p99 added
  for r in "${lat_rows[@]+"${lat_rows[@]}"}"; do
    base=direct; [[ "$r" == *stream* ]] && base=direct-stream
    added=""
    [ "$r" != "$base" ] && [ -n "${LAT[$base]:-}" ] && added=$(awk -v a="${LAT[$r]}" -v b="${LAT[$base]}" 'BEGIN {printf "%+.3f ms", a - b}')
    err=""; [ "${LATERR[$r]:-0}" != 0 ] && err="  (${LATERR[$r]} errors)"
    printf '%-34s %10s %10s %12s%s\n' "$r" "$(fmt_ms "${LAT[$r]}")" "$(fmt_ms "${LAT99[$r]}")" "$added" "$err"
  done
  if [ -n "${LAT[ours]:-}" ] && [ -n "${LAT[direct]:-}" ]; then
    verdicts+=("one-connection added latency: $(awk -v a="${LAT[ours]}" -v b="${LAT[direct]}" 'BEGIN {
      d = a - b; printf "%s (%.3f ms, target < 1 ms)", (d < 1) ? "PASS" : "FAIL", d }')")
  fi
  if [ -n "${LAT99[ours]:-}" ]; then
    verdicts+=("one-connection p99: $(awk -v a="${LAT99[ours]}" 'BEGIN {
      printf "%s (%.2f ms, target < 3 ms)", (a < 3) ? "PASS" : "FAIL", a }')")
  fi
fi

echo
echo "== Startup and memory (RSS: VmRSS of the server process and its children)"
for label in "${!OURS_INFO[@]}"; do echo "ours[$label]: ${OURS_INFO[$label]}"; done | sort
for l in "${mem_lines[@]+"${mem_lines[@]}"}"; do echo "$l"; done
[ -n "$ours_bin" ] && ! on "$MEM" && echo "ours memory phase: not run (MEM=0)"
[ -n "$mem_verdict" ] && [ ${#mem_lines[@]} -eq 0 ] && echo "ours memory phase: $mem_verdict"
[ -n "$litellm_rss" ] && echo "litellm RSS after its runs: $(mb "$litellm_rss") MB"
[ -n "$mem_verdict" ] && verdicts+=("memory after $MEM_N requests: $mem_verdict")

if [ -n "$ours_bin" ]; then
  echo
  echo "== Targets"
  for v in "${verdicts[@]+"${verdicts[@]}"}"; do echo "$v"; done
fi
[ "$ours_failed" = 1 ] && echo "ours did not run: ${OURS_INFO[default]:-no switchboard executable ($SWITCHBOARD)}"

echo
echo "total time: $(( $(date +%s) - t_start )) s; results: ${result#"$repo"/}"
rc=0
[ "$ours_failed" = 1 ] && rc=1
exit $rc
