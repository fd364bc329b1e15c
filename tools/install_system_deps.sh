#!/usr/bin/env bash
# Installs the Debian packages that the test servers need, when they are missing.
# Without root it only reports what is missing (the tests then skip, or fail when
# CRTPY_REQUIRE_SERVERS=1).
set -u
need=()
command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || need+=(mosquitto)
command -v tinyproxy >/dev/null 2>&1 || [ -x /usr/bin/tinyproxy ] || [ -x /usr/sbin/tinyproxy ] || need+=(tinyproxy)
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || need+=(nginx-light)
command -v openssl >/dev/null 2>&1 || need+=(openssl)
[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" != 0 ]; then
  echo "missing Debian packages (not root, not installing): ${need[*]}" >&2
  exit 0
fi
echo "installing Debian packages: ${need[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null
apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
# The packages start their own services; the tests run private instances instead.
for svc in mosquitto tinyproxy nginx; do
  (service "$svc" stop || systemctl stop "$svc") >/dev/null 2>&1 || true
done
exit 0
