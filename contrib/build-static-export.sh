#!/usr/bin/env bash
# Build one statically linked ferry-export, to copy to any Linux source
# server (no install, no libraries: CentOS 7, SLES 12, Ubuntu 16.04 and
# newer; kernel 3.10 or later). From Debian's static libraries (libssl.a,
# libevent*.a, libjansson.a, libzstd.a, libxxhash.a, libqcow.a, libvhdi.a,
# libvmdk.a, libbfio.a, libblkid.a, libext2fs.a, libz.a, glibc's libc.a).
#   bash contrib/build-static-export.sh [BUILDDIR]   (default build-static)
# prints the binary's path on its last line.
set -eu
cd "$(dirname "$0")/.."
dir=${1:-build-static}
if [ ! -f "$dir/build.ninja" ]; then
	meson setup "$dir" --buildtype=release -Dstatic_export=true >"$dir.setup.log" 2>&1 ||
		{ cat "$dir.setup.log" >&2; exit 1; }
	rm -f "$dir.setup.log"
fi
# glibc warns that getaddrinfo & co. in a static binary need its NSS
# modules at run time: ferry-export resolves names with libevent's evdns
# instead (tools/export/resolve.c), and parses numeric addresses itself.
ninja -C "$dir" tools/export/ferry-export 2>&1 | grep -v "statically linked applications requires at runtime" | grep -E "error|FAILED" >&2 && exit 1
bin=$dir/tools/export/ferry-export
case $(LC_ALL=C ldd "$bin" 2>&1) in
*"not a dynamic executable"*) ;;
*) echo "$bin is not static: $(ldd "$bin" 2>&1)" >&2; exit 1 ;;
esac
echo "$(cd "$(dirname "$bin")" && pwd)/ferry-export"
