#!/usr/bin/env bash
# Installs the Debian packages table-allocator needs at run time and in its
# tests, when they are missing: libmnl0 (the client's netlink library),
# iproute2 (`ip netns` in the end-to-end tests), PostgreSQL (the shared
# store's tests: initdb and pg_ctl of a throwaway server; the package's own
# cluster is not used), the real callers of the hook scripts (dhclient with
# dnsmasq as the DHCP server, ifupdown, networkd-dispatcher with
# systemd-networkd in the deb test's container), what `make deb` and its test use
# (dpkg-dev, lintian, systemd-analyze of systemd, man-db, systemd-nspawn of
# systemd-container to run the installed units under systemd), and openssl (the
# message-authentication tests check the server against its HMAC, a signer
# independent of ours).
# Needs root; does nothing when everything is present.
set -euo pipefail
packages=(libmnl0 iproute2 procps postgresql isc-dhcp-client dnsmasq-base ifupdown networkd-dispatcher
  dpkg-dev lintian systemd systemd-container man-db openssl)
if [ -n "${TA_EXTRA_PACKAGES:-}" ]; then read -r -a extra <<<"$TA_EXTRA_PACKAGES"; packages+=("${extra[@]}"); fi
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
  echo "install-system-deps: missing ${missing[*]}; run as root or install them with apt-get" >&2
  exit 1
fi
echo "install-system-deps: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
# Other jobs on the machine may hold dpkg's lock for a while: wait for it.
apt-get update -qq -o DPkg::Lock::Timeout=600
apt-get install -y -qq --no-install-recommends -o DPkg::Lock::Timeout=600 "${missing[@]}" >/dev/null
