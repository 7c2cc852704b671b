#!/usr/bin/env bash
# nvmux as an application outside the tree sees it: installs the build into
# a staging prefix, builds tools/examples/external_app against it twice
# (CMake's find_package, and pkg-config; the latter also statically), runs
# each as a secondary of a running nvmuxd serving an nvmux-emu, and checks
# what the package holds (cpack -G DEB). Exit 0 when all of it works.
#
#   test/install/install_test.sh BUILD_DIR
set -euo pipefail
src=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
build=$(cd "${1:?BUILD_DIR}" && pwd)
work=$(mktemp -d /tmp/nvmux-install.XXXXXX)
group=$((700000 + $$ % 90000))
pids=()
cleanup() {
  local rc=$?
  trap - EXIT
  for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
    kill -TERM "${pids[$i]}" 2>/dev/null || true
    wait "${pids[$i]}" 2>/dev/null || true
  done
  "$build/tools/manage/nvmux-manage" cleanup -i "$group" --yes >/dev/null 2>&1 || true
  rm -rf "$work"
  exit $rc
}
trap cleanup EXIT
fail() { echo "install_test: $*" >&2; exit 1; }
step() { echo "== $*"; }

prefix=$work/prefix
step "cmake --install into $prefix"
cmake --install "$build" --prefix "$prefix" > "$work/install.log" || { cat "$work/install.log"; fail "install failed"; }
libdir=$(dirname "$(find "$prefix" -name libnvmux.so -print -quit)")
[ -n "$libdir" ] && [ -f "$libdir/libnvmux.a" ] || fail "libnvmux.so and libnvmux.a are not both installed"
for f in include/nvmux/controller.h include/nvmux/result.h include/nvmux/dma_buffer.h include/nvmux/version.h \
         bin/nvmuxd bin/nvmux-emu bin/nvmux-perf bin/nvmux-identify bin/nvmux-manage share/nvmux/scripts/hugepages.sh \
         lib/systemd/system/nvmuxd@.service; do
  [ -e "$prefix/$f" ] || fail "$f is not installed"
done
[ -f "$libdir/cmake/nvmux/nvmuxConfig.cmake" ] && [ -f "$libdir/pkgconfig/nvmux.pc" ] ||
  fail "the CMake package or nvmux.pc is missing"

step "public headers are self-contained (each compiles alone against the prefix)"
for h in "$prefix"/include/nvmux/*.h "$prefix"/include/nvmux/spec/*.h; do
  echo "#include <nvmux/${h#"$prefix"/include/nvmux/}>" | c++ -std=c++20 -fsyntax-only -I"$prefix/include" -x c++ - ||
    fail "$h does not compile on its own against the installed headers"
done
if grep -rn '#include "\(shm\|libclient\|primary\|secondary\|tools\)/' "$prefix/include"; then
  fail "a public header includes an internal one"
fi

step "libnvmux.so exports the API only"
exported=$(nm -D --defined-only "$libdir/libnvmux.so" | awk '{print $3}')
# (grep reads all its input: with -q it could exit first and fail the pipe
# by SIGPIPE under pipefail, as it did once the export list grew.)
echo "$exported" | grep '^rte_' > /dev/null && fail "libnvmux.so exports DPDK's symbols"
echo "$exported" | c++filt | grep '^nvmux::Env::Init' > /dev/null || fail "libnvmux.so does not export nvmux::Env::Init"

step "build the example with find_package(nvmux)"
cmake -S "$src/tools/examples/external_app" -B "$work/app-cmake" -DCMAKE_PREFIX_PATH="$prefix" > "$work/app.log" 2>&1 &&
  cmake --build "$work/app-cmake" >> "$work/app.log" 2>&1 || { cat "$work/app.log"; fail "find_package build failed"; }
step "build the example with pkg-config (shared, then static)"
export PKG_CONFIG_PATH=$libdir/pkgconfig
make -s -C "$src/tools/examples/external_app" OUT="$work" > "$work/make.log" 2>&1 || { cat "$work/make.log"; fail "pkg-config build failed"; }
mkdir -p "$work/static"
make -s -B -C "$src/tools/examples/external_app" OUT="$work/static" STATIC=1 > "$work/make.log" 2>&1 ||
  { cat "$work/make.log"; fail "static pkg-config build failed"; }
ldd "$work/static/nvmux-external-app" | grep libnvmux > /dev/null && fail "the static build still links libnvmux.so"

step "run them as secondaries of nvmuxd -i $group against nvmux-emu"
"$prefix/bin/nvmux-emu" --socket "$work/emu" --ns size=64M > "$work/emu.log" 2>&1 &
pids+=($!)
for _ in $(seq 200); do [ -S "$work/emu/cntrl" ] && break; sleep 0.05; done
"$prefix/bin/nvmuxd" -i "$group" -r "trtype:vfiouser traddr:$work/emu" > "$work/nvmuxd.log" 2>&1 &
pids+=($!)
for _ in $(seq 300); do grep -q "nvmuxd: group $group ready" "$work/nvmuxd.log" && break; sleep 0.1; done
grep -q "nvmuxd: group $group ready" "$work/nvmuxd.log" || { cat "$work/nvmuxd.log"; fail "nvmuxd did not start"; }
for app in "$work/app-cmake/nvmux-external-app" "$work/nvmux-external-app" "$work/static/nvmux-external-app"; do
  out=$(LD_LIBRARY_PATH=$libdir "$app" "$group" 2>&1) || { echo "$out"; fail "$app failed"; }
  echo "$out"
  case "$out" in *"wrote and read back LBA"*"trtype:vfiouser traddr:$work/emu"*) ;; *) fail "$app: unexpected output";; esac
done

step "cpack -G DEB holds the library, headers, packages, nvmuxd, its unit and the tools"
if command -v dpkg-deb >/dev/null; then
  (cd "$work" && cpack -G DEB --config "$build/CPackConfig.cmake" > "$work/cpack.log" 2>&1) ||
    { cat "$work/cpack.log"; fail "cpack failed"; }
  deb=$(ls "$work"/nvmux_*.deb)
  contents=$(dpkg-deb -c "$deb")
  for f in libnvmux.so libnvmux.a include/nvmux/env.h cmake/nvmux/nvmuxConfig.cmake pkgconfig/nvmux.pc bin/nvmuxd \
           bin/nvmux-perf nvmuxd@.service hugepages.sh; do
    echo "$contents" | grep "$f" > /dev/null || fail "$(basename "$deb") lacks $f"
  done
  echo "$(basename "$deb"): $(echo "$contents" | wc -l) entries"
fi
echo "install_test: passed"
