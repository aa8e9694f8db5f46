# Throwaway services for the test suites, started from the machine's
# binaries (installed with apt-get when missing and running as root).
# Source this file, call start_postgres; everything stops on exit.

SERVICES_DIR=""
SERVICES_STOP=()

services_cleanup() {
  local i
  for ((i = ${#SERVICES_STOP[@]} - 1; i >= 0; i--)); do
    eval "${SERVICES_STOP[$i]}" >/dev/null 2>&1 || true
  done
  [ -n "$SERVICES_DIR" ] && rm -rf "$SERVICES_DIR"
}
trap services_cleanup EXIT

services_dir() {
  if [ -z "$SERVICES_DIR" ]; then
    SERVICES_DIR=$(mktemp -d "${TMPDIR:-/tmp}/tidings-services.XXXXXX")
    chmod 755 "$SERVICES_DIR"
  fi
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

apt_install() {
  if [ "$(id -u)" != 0 ]; then
    echo "error: $* is not installed and this is not root; install it ($*) and run again" >&2
    return 1
  fi
  echo "installing $* with apt-get..." >&2
  if [ -z "${SERVICES_APT_UPDATED:-}" ]; then
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
    SERVICES_APT_UPDATED=1
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >&2
}

# PostgreSQL refuses to run as root: find or create an unprivileged user.
service_user() {
  if [ "$(id -u)" != 0 ]; then id -un; return; fi
  if id postgres >/dev/null 2>&1; then echo postgres; return; fi
  id tidings-test >/dev/null 2>&1 || useradd --system --no-create-home tidings-test
  echo tidings-test
}

run_as() {
  local user=$1; shift
  if [ "$(id -u)" = 0 ]; then runuser -u "$user" -- "$@"; else "$@"; fi
}

postgres_bin() {
  local dir
  dir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
  if [ -z "$dir" ] && command -v initdb >/dev/null 2>&1; then
    dir=$(dirname "$(readlink -f "$(command -v initdb)")")
  fi
  echo "$dir"
}

# Starts PostgreSQL on a free loopback port; exports TIDINGS_TEST_POSTGRES_URL.
start_postgres() {
  local bin user port data
  bin=$(postgres_bin)
  if [ -z "$bin" ] || [ ! -x "$bin/initdb" ]; then
    apt_install postgresql || return 1
    bin=$(postgres_bin)
  fi
  if [ -z "$bin" ] || [ ! -x "$bin/pg_ctl" ]; then
    echo "error: PostgreSQL's initdb/pg_ctl were not found after installing" >&2
    return 1
  fi
  services_dir
  user=$(service_user)
  port=$(free_port)
  data="$SERVICES_DIR/pg"
  mkdir -p "$data"
  chown "$user" "$data" 2>/dev/null || true
  if ! run_as "$user" "$bin/initdb" -D "$data/data" -U postgres --auth=trust \
      --encoding=UTF8 --locale=C.UTF-8 >"$SERVICES_DIR/initdb.log" 2>&1; then
    echo "error: initdb failed:" >&2; cat "$SERVICES_DIR/initdb.log" >&2
    return 1
  fi
  if ! run_as "$user" "$bin/pg_ctl" -D "$data/data" -w -t 60 -l "$data/log" \
      -o "-p $port -k $data -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200" \
      start >/dev/null; then
    echo "error: PostgreSQL did not start:" >&2; cat "$data/log" >&2
    return 1
  fi
  SERVICES_STOP+=("run_as $user $bin/pg_ctl -D $data/data -m immediate stop")
  export TIDINGS_TEST_POSTGRES_URL="postgres://postgres@127.0.0.1:$port/postgres"
  echo "PostgreSQL $("$bin/postgres" --version | awk '{print $3}') on 127.0.0.1:$port" >&2
}

# Starts Redis on a free loopback port (no persistence, in the services'
# temp dir); exports TIDINGS_TEST_REDIS_URL.
start_redis() {
  local port dir
  if ! command -v redis-server >/dev/null 2>&1; then
    apt_install redis-server || return 1
  fi
  if ! command -v redis-server >/dev/null 2>&1; then
    echo "error: redis-server was not found after installing" >&2
    return 1
  fi
  services_dir
  port=$(free_port)
  dir="$SERVICES_DIR/redis"
  mkdir -p "$dir"
  redis-server --bind 127.0.0.1 --port "$port" --dir "$dir" --save '' --appendonly no \
    --daemonize yes --pidfile "$dir/redis.pid" --logfile "$dir/log" >/dev/null
  local i
  for i in $(seq 1 100); do
    redis-cli -h 127.0.0.1 -p "$port" ping >/dev/null 2>&1 && break
    sleep 0.1
  done
  if ! redis-cli -h 127.0.0.1 -p "$port" ping >/dev/null 2>&1; then
    echo "error: Redis did not start:" >&2; cat "$dir/log" >&2
    return 1
  fi
  SERVICES_STOP+=("redis-cli -h 127.0.0.1 -p $port shutdown nosave")
  export TIDINGS_TEST_REDIS_URL="redis://127.0.0.1:$port"
  echo "Redis $(redis-server --version | awk '{print $3}' | cut -d= -f2) on 127.0.0.1:$port" >&2
}
