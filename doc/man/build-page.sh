#!/bin/sh
# build-page.sh SCDOC PAGE.scd OUT [PROGRAM]: render a man page with scdoc,
# after checking that every option PROGRAM --help names (--long, and
# ferryfs's "-o name") appears in the page. A page that lacks one fails
# the build, naming it.
set -eu
scdoc=$1 page=$2 out=$3 prog=${4:-}
if [ -n "$prog" ]; then
	help=$("$prog" --help 2>&1 || true)
	opts=$(printf '%s\n' "$help" | grep -oE -- '(^|[ ,[])--[a-z][a-z0-9-]+' |
		sed 's/^[ ,[]*//' | sort -u)
	opts="$opts $(printf '%s\n' "$help" | grep -oE -- '-o [a-z0-9_]+' | sed 's/^-o /-o /' | sort -u | tr ' ' '@')"
	missing=
	for o in $opts; do
		o=$(printf '%s' "$o" | tr '@' ' ')
		case $o in
		"-o "*)	# in the page as *-o name* or *-o name=*
			grep -qE -- "\\*-o ${o#-o }(\\*|=)" "$page" || missing="$missing '$o'" ;;
		*)	grep -qF -- "$o" "$page" || missing="$missing $o" ;;
		esac
	done
	if [ -n "$missing" ]; then
		echo "$page: options of $(basename "$prog") --help missing from its man page:$missing" >&2
		exit 1
	fi
fi
"$scdoc" <"$page" >"$out.tmp"
mv "$out.tmp" "$out"
