#!/usr/bin/env bash
# The whole test suite, as CI runs it: install dependencies, build twice
# (optimised, and with AddressSanitizer + UBSan), run every unit and
# integration test under meson in both, build a release configuration and
# run its unit tests, run the unit tests and the threads suite in a
# ThreadSanitizer build, then run each libFuzzer target for
# FUZZ_SECONDS (default 30) in a clang build, and print "N passed, N failed,
# N skipped".
set -u
cd "$(dirname "$0")/.."
bash contrib/install-deps.sh || { echo "0 passed, 1 failed"; exit 1; }

pass=0 fail=0 skip=0 rc=0
run_suite() {	# run_suite BUILDDIR MESON-OPTIONS...
	local dir=$1
	shift
	local suites=()
	while [ "${1:-}" = --suite ]; do
		suites+=(--suite "$2")
		shift 2
	done
	if [ ! -f "$dir/build.ninja" ]; then
		meson setup "$dir" "$@" >/dev/null || return 1
	fi
	ninja -C "$dir" >/dev/null || { ninja -C "$dir"; return 1; }
	ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0} \
	UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1} \
		meson test -C "$dir" "${suites[@]}" --print-errorlogs --num-processes 2 \
		--timeout-multiplier "${TIMEOUT_MULTIPLIER:-1}"
	local r=$?
	local p f k
	# Count from meson's JSON log: one object per test. A skip is no
	# pass: it is counted apart.
	p=$(jq -s '[.[] | select(.result == "OK" or .result == "EXPECTEDFAIL")] | length' \
		"$dir/meson-logs/testlog.json")
	k=$(jq -s '[.[] | select(.result == "SKIP")] | length' \
		"$dir/meson-logs/testlog.json")
	f=$(jq -s '[.[] | select(.result != "OK" and .result != "SKIP" and .result != "EXPECTEDFAIL")] | length' \
		"$dir/meson-logs/testlog.json")
	pass=$((pass + p)); fail=$((fail + f)); skip=$((skip + k))
	return $r
}

# The portable exporter (-Dstatic_export=true), built once for test-static
# in every suite; if it fails to build, test-static builds it and says why.
if static=$(bash contrib/build-static-export.sh build-static 2>build-static.log | tail -1) &&
	[ -x "$static" ]; then
	export FERRY_STATIC_EXPORT=$static
else
	cat build-static.log
fi
run_suite build || rc=1
# A release build (NDEBUG, -O3) must build clean too; its unit tests and
# fuzz seeds run, so no check depends on assert().
run_suite build-release --suite unit --buildtype=release || rc=1
if [ "${FERRY_SANITIZE:-1}" = 1 ]; then
	run_suite build-asan -Db_sanitize=address,undefined -Db_lundef=false \
		-Dbuildtype=debug || rc=1
fi
# ThreadSanitizer: the unit tests and the tests that drive the mount's and
# the exporter's threads (suite "threads"). A race it reports makes the
# program exit 66, which fails its test.
if [ "${FERRY_TSAN:-1}" = 1 ]; then
	TSAN_OPTIONS=${TSAN_OPTIONS:-halt_on_error=0:second_deadlock_stack=1} \
	run_suite build-tsan --suite unit --suite threads -Db_sanitize=thread \
		-Db_lundef=false -Dbuildtype=debug || rc=1
fi
if [ "${FERRY_FUZZ:-1}" = 1 ]; then
	CC=clang run_suite build-fuzz --suite fuzz -Dfuzzing=true \
		-Dfuzz_seconds="${FUZZ_SECONDS:-30}" \
		-Db_sanitize=address,undefined -Db_lundef=false -Dbuildtype=debug || rc=1
fi
[ "$rc" = 0 ] || [ "$fail" -gt 0 ] || fail=$((fail + 1))	# a build failed
echo "$pass passed, $fail failed, $skip skipped"
exit $rc
