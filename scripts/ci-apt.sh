#!/usr/bin/env bash
# Installs the Debian packages the deployment tests need (tests/deploy/):
#   prometheus      -> the real prometheus and promtool binaries (2.42 on bookworm): the
#                      dashboard and alert-rule queries run against a real scrape;
#   docker-compose  -> `docker-compose config -q` validates deploy/docker-compose.yml
#                      offline (no Docker engine is needed for that);
#   python3-venv    -> Debian's Python 3.11 stands for the image's interpreter when
#                      tests/deploy/test_dockerfile.py replays the Dockerfile as a
#                      non-root user (an interpreter under /root is not reachable);
#   chromium           -> tests/integration/test_statuspage.py loads the status page in
#                      headless Chromium and keeps a screenshot (build/status-page.png);
#   fonts-dejavu-core  -> the font the page names, so the screenshot is legible;
#   prometheus-alertmanager -> a real Alertmanager (0.25 on bookworm) behind
#                      alertmanager:// routes (tests/integration/test_alertmanager.py);
#   etcd-server        -> a real etcd (3.4 on bookworm) holding the leader lease of two
#                      replicas (tests/system/test_ha_*.py).
# Idempotent: installs nothing when every binary is already present. Runs as root (CI)
# or through sudo. Tests skip, never fail, when a binary is absent, so a machine without
# this script still passes the rest of the suite.
set -euo pipefail

need=()
command -v prometheus >/dev/null 2>&1 && command -v promtool >/dev/null 2>&1 || need+=(prometheus)
command -v docker-compose >/dev/null 2>&1 || need+=(docker-compose)
[ -x /usr/bin/python3.11 ] && /usr/bin/python3.11 -c "import ensurepip" 2>/dev/null || need+=(python3.11 python3-venv)
command -v chromium >/dev/null 2>&1 || need+=(chromium)
[ -e /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ] || need+=(fonts-dejavu-core)
command -v prometheus-alertmanager >/dev/null 2>&1 || need+=(prometheus-alertmanager)
command -v etcd >/dev/null 2>&1 || need+=(etcd-server)
if [ "${#need[@]}" -eq 0 ]; then
    echo "ci-apt: prometheus, promtool, docker-compose, python3-venv, chromium, alertmanager and etcd already installed"
    exit 0
fi

sudo=()
if [ "$(id -u)" -ne 0 ]; then
    sudo=(sudo)
fi

export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update -qq
# policy-rc.d refusing every start keeps the Debian prometheus, alertmanager and etcd
# services from being started:
# the tests run the binary themselves, on a free loopback port.
if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' | "${sudo[@]}" tee /usr/sbin/policy-rc.d >/dev/null
    "${sudo[@]}" chmod +x /usr/sbin/policy-rc.d
    trap '"${sudo[@]}" rm -f /usr/sbin/policy-rc.d' EXIT
fi
"${sudo[@]}" apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
echo "ci-apt: installed ${need[*]}"
prometheus --version 2>&1 | head -1
