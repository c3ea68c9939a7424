#!/usr/bin/env bash
# Starts the local PostgreSQL the PostgreSQL tests use (Debian's `postgresql` package and its cluster tools),
# creates their role and database, and prints the URL they read:
#
#   export EASEL_TEST_DATABASE_URL="$(scripts/pg-test-cluster.sh)"
#
# Idempotent: a running cluster, an existing role or database is left as it is. Installs the package with
# apt-get when it is missing (root only). Progress goes to stderr; stdout carries only the URL. Tests create
# and drop their own databases, so the role may create databases; it is no superuser.
set -euo pipefail

PG_ROLE="${EASEL_TEST_PG_ROLE:-easel}"
PG_PASSWORD="${EASEL_TEST_PG_PASSWORD:-easel}"
PG_DATABASE="${EASEL_TEST_PG_DATABASE:-easel_test}"

say() { echo "pg-test-cluster: $*" >&2; }
fail() { say "$*"; exit 1; }

# The cluster's files belong to the postgres user; its tools refuse to run as anyone else.
as_postgres() {
  if [ "$(id -un)" = postgres ]; then "$@"
  elif [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"
  elif command -v sudo >/dev/null 2>&1; then sudo -n -u postgres -- "$@"
  else fail "run as root (or as postgres, or with passwordless sudo) to manage the cluster"
  fi
}

if ! command -v pg_ctlcluster >/dev/null 2>&1 || [ -z "$(ls /etc/postgresql 2>/dev/null)" ]; then
  [ "$(id -u)" -eq 0 ] || fail "PostgreSQL is not installed: run 'apt-get install postgresql' as root"
  say "installing postgresql"
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null) \
    || fail "could not install postgresql with apt-get"
fi

version="$(ls /etc/postgresql 2>/dev/null | sort -V | tail -1)"
if [ -z "$version" ]; then
  # The package installs without a cluster where its post-install step was skipped (some containers).
  version="$(ls /usr/lib/postgresql | sort -V | tail -1)"
  say "creating cluster $version/main"
  pg_createcluster "$version" main >&2
fi

status="$(pg_lsclusters --no-header | awk -v v="$version" '$1 == v && $2 == "main" { print $4 }')"
if [ "$status" != "online" ]; then
  say "starting cluster $version/main"
  # Containers have no systemd: start it directly instead of through the systemctl redirect.
  pg_ctlcluster --skip-systemctl-redirect "$version" main start >&2 \
    || fail "could not start $version/main (see /var/log/postgresql/postgresql-$version-main.log)"
fi
port="$(pg_lsclusters --no-header | awk -v v="$version" '$1 == v && $2 == "main" { print $3 }')"

# Waits for the server to accept connections (it may still be recovering right after start).
for _ in $(seq 1 50); do
  pg_isready -q -h 127.0.0.1 -p "$port" && break
  sleep 0.2
done
pg_isready -q -h 127.0.0.1 -p "$port" || fail "$version/main does not accept connections on port $port"

url="postgres://${PG_ROLE}:${PG_PASSWORD}@127.0.0.1:${port}/${PG_DATABASE}"
# Already set up (a developer's second run, without root): nothing to create.
if PGPASSWORD="$PG_PASSWORD" psql -X -tA -h 127.0.0.1 -p "$port" -U "$PG_ROLE" -d "$PG_DATABASE" \
  -c "SELECT rolcreatedb AND pg_has_role(current_user, 'pg_signal_backend', 'member') FROM pg_roles
      WHERE rolname = current_user" 2>/dev/null | grep -qx t; then
  say "PostgreSQL $version ready: EASEL_TEST_DATABASE_URL=$url"
  echo "$url"
  exit 0
fi

psql_admin() { as_postgres psql -X -q -v ON_ERROR_STOP=1 -p "$port" "$@"; }

# Role and database: created when missing, the password (re)set so the URL below always works.
psql_admin -d postgres -v role="$PG_ROLE" -v password="$PG_PASSWORD" <<'SQL' >&2
SELECT format('CREATE ROLE %I LOGIN', :'role') WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = :'role')
\gexec
SELECT format('ALTER ROLE %I LOGIN CREATEDB PASSWORD %L', :'role', :'password')
\gexec
-- A test database is dropped WITH (FORCE), which must also end an autovacuum worker busy in it.
SELECT format('GRANT pg_signal_backend TO %I', :'role')
\gexec
SQL
psql_admin -d postgres -v role="$PG_ROLE" -v database="$PG_DATABASE" <<'SQL' >&2
SELECT format('CREATE DATABASE %I OWNER %I', :'database', :'role')
  WHERE NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = :'database')
\gexec
SQL

say "PostgreSQL $version ready: EASEL_TEST_DATABASE_URL=$url"
echo "$url"
