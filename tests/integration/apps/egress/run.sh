#!/bin/sh
# Each client as a new user writes it: no proxy settings at all.
unset http_proxy https_proxy HTTP_PROXY HTTPS_PROXY no_proxy NO_PROXY
echo "=== getent"
getent hosts api.egress.test
getent hosts no.egress.test; echo "getent denied: exit $?"
echo "=== curl"
curl -sS --noproxy '*' --cacert /app/ca.pem "https://api.egress.test:$PORT/curl-by-name"; echo
curl -sS --noproxy '*' --cacert /app/ca.pem "https://192.0.2.10:$PORT/curl-by-address"; echo
curl -sS --noproxy '*' --cacert /app/ca.pem --max-time 10 "https://192.0.2.99:$PORT/denied"; echo "curl denied: exit $?"
echo "=== python"
python3 /app/clients.py
echo "=== node"
NODE_EXTRA_CA_CERTS=/app/ca.pem NODE_PATH=/usr/local/lib/node_modules node /app/clients.js
echo "=== done"
