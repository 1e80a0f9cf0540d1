#!/bin/sh
# Build an optimized CPython for `make bench-opt`: PGO + LTO, as distributions and python.org
# build theirs. pyenv builds without both, and on that build our processes spend 25-40 % more
# CPU per command (BENCHMARKS.md, sessions 19-20), which is not what a deployment runs.
#
# The source is the upstream tarball as Debian's archive carries it (its "orig" tarball), because
# python.org is not reachable from these machines. Trust chain, all checked before building:
# the suite's InRelease is verified with gpgv against debian-archive-keyring; it gives the
# SHA-256 of main/source/Sources.xz; that index gives the SHA-256 of the tarball.
#
# Usage: bench/build_python.sh [PREFIX]   (default ~/.cache/ra-bench/python3.13-opt)
# Idempotent: an existing PREFIX/bin/python3.13 that runs is kept. Took 14 min on 2 cores here.
# PYOPT_SUITE (default trixie) picks the Debian suite; the newest python3.13 in it is built.
# PYOPT_MIRROR and PYOPT_KEYRING name another archive and its keyring (tests/bench/test_build_python.py).
set -eu

SERIES=3.13
SUITE=${PYOPT_SUITE:-trixie}
PREFIX=${1:-$HOME/.cache/ra-bench/python$SERIES-opt}
MIRROR=${PYOPT_MIRROR:-http://deb.debian.org/debian}
KEYRING=${PYOPT_KEYRING:-/usr/share/keyrings/debian-archive-keyring.gpg}
PY=$PREFIX/bin/python$SERIES

if "$PY" -c '' 2>/dev/null; then
    echo "$PY: already built"
    exit 0
fi
for tool in curl gpgv sha256sum xz make gcc; do
    command -v "$tool" >/dev/null || { echo "build_python: needs $tool" >&2; exit 1; }
done
[ -r "$KEYRING" ] || { echo "build_python: needs $KEYRING (apt-get install debian-archive-keyring)" >&2; exit 1; }

WORK=$(mktemp -d "${TMPDIR:-/tmp}/ra-pyopt.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
cd "$WORK"

fetch() { curl -fsS --retry 3 -o "$2" "$1"; }

# 1. the suite's signed release file
fetch "$MIRROR/dists/$SUITE/InRelease" InRelease
gpgv --keyring "$KEYRING" --output Release InRelease 2>gpgv.log || { cat gpgv.log >&2; exit 1; }

# 2. the source index, checked against the release file
fetch "$MIRROR/dists/$SUITE/main/source/Sources.xz" Sources.xz
want=$(awk '/^SHA256:/{s=1; next} /^[^ ]/{s=0} s && $3 == "main/source/Sources.xz" {print $1}' Release)
[ -n "$want" ] || { echo "build_python: Sources.xz not listed in $SUITE's Release" >&2; exit 1; }
echo "$want  Sources.xz" | sha256sum -c --quiet -

# 3. the newest python3.13 source package's upstream tarball, checked against the index
xz -dc Sources.xz | awk -v pkg="python$SERIES" '
    function flush() { if (p && d != "" && f != "") print v, d, h, f; p = 0; d = f = "" }
    /^$/ { flush() }
    /^Package: / { p = ($2 == pkg) }
    p && /^Version: / { v = $2 }
    p && /^Directory: / { d = $2 }
    p && /^Checksums-Sha256:/ { c = 1; next }
    /^[^ ]/ { c = 0 }
    p && c && $3 ~ /\.orig\.tar\.xz$/ { h = $1; f = $3 }
    END { flush() }' | sort -V | tail -n 1 > pick
read -r version dir sha file < pick || { echo "build_python: no python$SERIES in $SUITE" >&2; exit 1; }
echo "building CPython from $MIRROR/$dir/$file (Debian $version, sha256 $sha) into $PREFIX"
fetch "$MIRROR/$dir/$file" "$file"
echo "$sha  $file" | sha256sum -c --quiet -

# 4. build: profile-guided (the default training task: a part of CPython's own test suite)
#    and link-time optimized; the log is kept beside the interpreter
mkdir src
tar -xJf "$file" -C src --strip-components=1
mkdir -p "$PREFIX"
(
    cd src
    ./configure --prefix="$PREFIX" --enable-optimizations --with-lto --with-ensurepip=install
    make -j"$(nproc)"
    make install
) > "$PREFIX/build.log" 2>&1 || { tail -n 40 "$PREFIX/build.log" >&2; exit 1; }
"$PY" -c 'import ssl, sqlite3, ctypes, lzma, bz2, zlib, sysconfig
args = sysconfig.get_config_var("CONFIG_ARGS")
assert "--enable-optimizations" in args and "--with-lto" in args, args'
echo "built $PY ($("$PY" --version), PGO + LTO)"
