#!/bin/sh
# Install the system packages the tests drive, when missing: Debian's chromium for the
# browser tests (tests/browser/, Playwright with executable_path; never a browser
# download). Idempotent and quiet: does nothing when /usr/bin/chromium is there.
set -eu

if [ ! -x /usr/bin/chromium ]; then
    if [ "$(id -u)" -ne 0 ]; then
        SUDO="sudo"
    else
        SUDO=""
    fi
    echo "installing chromium (Debian package) for the browser tests" >&2
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        chromium >/dev/null
fi
exit 0
