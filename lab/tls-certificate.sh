#!/usr/bin/env bash
# A self-signed certificate for the lab and the tests (localhost, 127.0.0.1),
# made once on the controller. Usage: lab/tls-certificate.sh DIR
set -euo pipefail
dir=${1:?usage: lab/tls-certificate.sh DIR}
mkdir -p "$dir"
if [ -s "$dir/lab.crt" ] && [ -s "$dir/lab.key" ]; then
  exit 0
fi
openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=localhost" \
  -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
  -keyout "$dir/lab.key" -out "$dir/lab.crt" 2>/dev/null
chmod 0600 "$dir/lab.key"
