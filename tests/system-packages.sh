#!/bin/sh
# Install the Debian packages the tests use, when missing; idempotent. One line per
# package: the command whose path proves it is installed, then the package.
set -eu

missing=""
while read -r command package; do
    [ -n "$command" ] || continue
    if [ ! -x "$command" ]; then
        missing="$missing $package"
    fi
done <<'LIST'
/usr/bin/systemd-analyze systemd
LIST

if [ -n "$missing" ]; then
    echo "installing Debian packages:$missing" >&2
    if [ "$(id -u)" -ne 0 ]; then
        echo "not root: install them by hand (apt-get install$missing)" >&2
        exit 0
    fi
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing
fi
