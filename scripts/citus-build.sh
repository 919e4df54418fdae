#!/usr/bin/env bash
# Build Citus from source and install it into this machine's PostgreSQL, where no Citus package fits
# (Citus's own packages, postgresql-<version>-citus-<release> from its repository, are the easy way:
# see docs/operations.md#citus). About 2 minutes on 2 cores. Needs root for apt-get and make install.
#
#   scripts/citus-build.sh [SOURCE]
#
# SOURCE is a citusdata/citus source tarball (a file or a URL; default: the v13.2.2 tag on GitHub).
# PG_VERSION picks the PostgreSQL (default: the newest installed); DESTDIR installs elsewhere (a dry run).
set -euo pipefail
source=${1:-https://github.com/citusdata/citus/archive/refs/tags/v13.2.2.tar.gz}
version=${PG_VERSION:-$(ls /etc/postgresql | sort -V | tail -n 1)}
pg_config=/usr/lib/postgresql/$version/bin/pg_config
if [ -z "${DESTDIR:-}" ] && [ -f "$("$pg_config" --pkglibdir 2>/dev/null)/citus.so" ]; then
  echo "citus: already installed for PostgreSQL $version"
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq "postgresql-server-dev-$version" libcurl4-openssl-dev liblz4-dev libzstd-dev \
  libkrb5-dev libselinux1-dev libxslt1-dev libpam0g-dev libreadline-dev curl >/dev/null
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
case "$source" in
  http://*|https://*) curl -fsSL "$source" -o "$work/citus.tar.gz" ;;
  *) cp "$source" "$work/citus.tar.gz" ;;
esac
tar -xzf "$work/citus.tar.gz" -C "$work"
cd "$work"/citus-*/
# PostgreSQL 15.20 declares have_createdb_privilege() itself; Citus 13.2's compatibility header defines
# a function of the same name. Renaming Citus's copy is all it takes.
compat=src/include/pg_version_compat.h
grep -q citus_compat_have_createdb_privilege "$compat" || perl -0pi -e \
  's/static inline bool\nhave_createdb_privilege\(void\)/#define have_createdb_privilege citus_compat_have_createdb_privilege\n$&/' \
  "$compat"
PG_CONFIG=$pg_config ./configure >/dev/null
make -s -j"$(nproc)" >/dev/null
make -s install >/dev/null
echo "citus: installed for PostgreSQL $version${DESTDIR:+ under $DESTDIR}"
