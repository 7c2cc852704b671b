#!/bin/sh
# Checks the layering of ARCHITECTURE.md's table by #include lines: a lower
# layer never includes a higher one.
#   shm/        -> shm/ and the public nvmux/ headers only
#   libclient/  -> shm/, libclient/ (not primary/, secondary/, tools/), except
#                  nvmux_client (connect.cc, probe.cc, open_transport.h), the
#                  top of the library, which links the roles
#   secondary/  -> shm/, libclient/ (not primary/, tools/)
#   primary/    -> shm/, libclient/ (not secondary/, tools/)
# Tests (*_test.cc, fuzz targets, test/) may include test helpers; tools/
# may include anything of the library.
# Usage: scripts/check-layers.sh [SOURCE_DIR]; exit 1 listing violations.
set -eu
cd "${1:-$(dirname "$0")/..}"
bad=0
check() {  # folder, forbidden include prefixes (regex), excluded files (regex)
  dir=$1 forbidden=$2 exclude=${3:-^$}
  hits=$(grep -rnE "^#include \"($forbidden)" "$dir" --include='*.h' --include='*.cc' \
           | grep -vE '_test\.cc:|/fuzz/' | grep -vE "$exclude" || true)
  if [ -n "$hits" ]; then
    echo "layering: $dir includes a higher layer:"
    echo "$hits" | sed 's/^/  /'
    bad=1
  fi
}
check shm 'libclient/|primary/|secondary/|tools/|test/'
check libclient 'primary/|secondary/|tools/|test/' '^libclient/(connect\.cc|probe\.cc|open_transport\.h):'
check secondary 'primary/|tools/|test/'
check primary 'secondary/|tools/|test/'
[ "$bad" = 0 ] && echo "layering: ok (shm < libclient < primary, secondary < nvmux_client < tools)"
exit "$bad"
