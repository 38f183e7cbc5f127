#!/usr/bin/env bash
# Make sure a headless Chromium is on the PATH for `make test-browser`: install Debian/Ubuntu's chromium when
# none is found (as root, or with passwordless sudo). Exits non-zero when no browser can be had, so the browser
# test target fails loudly instead of passing without a browser.
set -uo pipefail

have_browser() {
    local name
    for name in "${FAIRDISTILL_CHROMIUM:-}" chromium chromium-browser google-chrome; do
        if [ -n "$name" ] && command -v "$name" >/dev/null 2>&1; then
            return 0
        fi
    done
    return 1
}

as_root() {
    if [ "$(id -u)" -eq 0 ]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo -n "$@"
    else
        "$@"
    fi
}

if have_browser; then
    exit 0
fi
echo "no Chromium found: installing Debian's chromium package for the report rendering test" >&2
if command -v apt-get >/dev/null 2>&1; then
    export DEBIAN_FRONTEND=noninteractive
    as_root apt-get update -qq || true
    as_root apt-get install -y -qq --no-install-recommends chromium \
        || as_root apt-get install -y -qq --no-install-recommends chromium-browser || true
fi
if ! have_browser; then
    echo "error: no Chromium could be installed; set FAIRDISTILL_CHROMIUM to a Chromium or Chrome binary" >&2
    exit 1
fi
