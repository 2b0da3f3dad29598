#!/usr/bin/env bash
# Install what ferry needs to build and test, from Debian's packages.
# Runs apt-get only for what is missing; needs root (or sudo) for that.
set -eu
PKGS=$(cat "$(dirname "$0")/debian-packages.txt")
missing=$(dpkg-query -W -f='${Package} ${db:Status-Status}\n' $PKGS 2>/dev/null |
	awk '$2 != "installed" {print $1}')
# Packages dpkg has never heard of are missing too.
for p in $PKGS; do
	dpkg-query -W "$p" >/dev/null 2>&1 || missing="$missing $p"
done
missing=$(echo $missing)
[ -z "$missing" ] && exit 0
SUDO=
[ "$(id -u)" = 0 ] || SUDO=sudo
echo "installing: $missing" >&2
$SUDO apt-get update -q
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends $missing
