#!/usr/bin/env bash
# What a package gets: meson install --destdir puts the programs, man
# pages, units, settings and completions where they belong; every page
# renders with man -l without a warning and has the sections a man page
# has; the units pass systemd-analyze verify; bash completion completes;
# a page that lacks an option of its program's --help fails the build.
. "$(dirname "$0")/functions.sh"
requires man
B=${FERRY_BUILD:?}
command -v scdoc >/dev/null || { echo "SKIP: no scdoc, no man pages built"; exit 77; }

D="$T/dest"
meson install -C "$B" --no-rebuild --destdir "$D" >"$T/install.log" 2>&1 ||
	fail "meson install: $(tail -5 "$T/install.log")"
prefix=$(meson introspect --buildoptions "$B" | jq -r '.[] | select(.name == "prefix") | .value')
sysconf=$(meson introspect --buildoptions "$B" | jq -r '.[] | select(.name == "sysconfdir") | .value')
case $sysconf in /*) ;; *) sysconf=$prefix/$sysconf ;; esac
P="$D$prefix"
for f in sbin/ferry-export sbin/ferryfs sbin/ferryctl bin/ferry-convert \
	share/man/man8/ferry-export.8 share/man/man8/ferryfs.8 \
	share/man/man8/ferryctl.8 share/man/man1/ferry-convert.1 \
	share/man/man7/ferry.7 lib/systemd/system/ferry-export.service \
	share/doc/ferry/examples/mnt-src.mount \
	share/bash-completion/completions/ferry-export \
	share/bash-completion/completions/ferryfs \
	share/bash-completion/completions/ferryctl \
	share/bash-completion/completions/ferry-convert; do
	[ -f "$P/$f" ] || fail "meson install: no $prefix/$f"
done
[ -f "$D$sysconf/default/ferry-export" ] || fail "meson install: no $sysconf/default/ferry-export"
for p in ferry-export ferryfs ferryctl; do
	[ -x "$P/sbin/$p" ] || fail "$prefix/sbin/$p is not executable"
done
"$P/sbin/ferryctl" --version | grep -q "^ferryctl " || fail "the installed ferryctl does not run"
# Nothing but these: no test binaries, no fuzz targets.
n=$(find "$D" -type f | wc -l)
[ "$n" = 16 ] || fail "meson install put $n files, not 16: $(find "$D" -type f)"
ok "meson install --destdir: programs, 5 man pages, unit, settings, example, completions under $prefix ($n files)"

for page in "$P"/share/man/man*/*.[178]; do
	LC_ALL=C.UTF-8 MANWIDTH=80 man --warnings -l "$page" >"$T/page.txt" 2>"$T/page.err" ||
		fail "man -l $page failed: $(cat "$T/page.err")"
	[ ! -s "$T/page.err" ] || fail "man -l $(basename "$page") warns: $(head -3 "$T/page.err")"
	for s in NAME SYNOPSIS DESCRIPTION OPTIONS FILES "EXIT STATUS" EXAMPLES "SEE ALSO"; do
		case $(basename "$page") in ferry.7) [ "$s" = OPTIONS ] && continue ;; esac
		grep -q "^$s" "$T/page.txt" || fail "$(basename "$page") has no $s section"
	done
done
ok "man -l renders every page without a warning, each with NAME ... SEE ALSO"

# The build's check: a page that lacks one of --help's options fails.
grep -v -- '--pool' "$FERRY_TESTS/../doc/man/ferry-export.8.scd" >"$T/short.8.scd"
rc=0
sh "$FERRY_TESTS/../doc/man/build-page.sh" scdoc "$T/short.8.scd" "$T/short.8" "$FERRY_EXPORT" 2>"$T/check.err" || rc=$?
[ "$rc" != 0 ] && grep -q -- "missing from its man page: --pool" "$T/check.err" && [ ! -e "$T/short.8" ] ||
	fail "a page without --pool was built: exit $rc: $(cat "$T/check.err")"
ok "a page that lacks --pool fails the build: $(cat "$T/check.err")"

if command -v systemd-analyze >/dev/null; then
	# Checked where installed: the unit's programs and pages under $D.
	sed "s|=$prefix/|=$P/|" "$P/lib/systemd/system/ferry-export.service" >"$T/ferry-export.service"
	cp "$P/share/doc/ferry/examples/mnt-src.mount" "$T/mnt-src.mount"
	grep -q "^ExecStart=$P/sbin/ferry-export " "$T/ferry-export.service" || fail "ExecStart: $(grep ExecStart "$T/ferry-export.service")"
	grep -q "^EnvironmentFile=$sysconf/default/ferry-export$" "$P/lib/systemd/system/ferry-export.service" || fail "EnvironmentFile: $(grep EnvironmentFile "$P/lib/systemd/system/ferry-export.service")"
	MANPATH="$P/share/man" timeout 60 systemd-analyze verify "$T/ferry-export.service" "$T/mnt-src.mount" >"$T/verify.log" 2>&1 ||
		fail "systemd-analyze verify: $(cat "$T/verify.log")"
	# The settings' default options listen with the string under /run/ferry.
	( . "$D$sysconf/default/ferry-export"; [[ $FERRY_OPTIONS == *"--url-file /run/ferry/"* ]] ) ||
		fail "the default settings do not write the URL under /run/ferry"
	ok "systemd-analyze verify: ferry-export.service and mnt-src.mount"
else
	echo "note: no systemd-analyze here; units not verified"
fi

# Completion, as bash runs it.
out=$(PATH="$P/sbin:$PATH" bash -c '
	. "$1"
	COMP_WORDS=(ferryctl st); COMP_CWORD=1; _ferry_complete; echo "${COMPREPLY[*]}"
	COMP_WORDS=(ferry-export --con); COMP_CWORD=1; _ferry_complete; echo "${COMPREPLY[*]}"
	COMP_WORDS=(ferryfs -o cache=/x,pre); COMP_CWORD=2; _ferry_complete; echo "${COMPREPLY[*]}"
	COMP_WORDS=(ferry-convert -O q); COMP_CWORD=2; _ferry_complete; echo "${COMPREPLY[*]}"
' sh "$P/share/bash-completion/completions/ferryctl")
[ "$out" = "status
--connect
cache=/x,prefetch=
qcow2" ] || fail "completion gave: $out"
ok "bash completion: ferryctl st -> status, --con -> --connect, -o ...,pre -> prefetch=, -O q -> qcow2"
