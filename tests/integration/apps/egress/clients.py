"""urllib with no proxies at all, TLS verified against the test CA, by name and by address."""
import os
import ssl
import urllib.request

ctx = ssl.create_default_context(cafile="/app/ca.pem")
opener = urllib.request.build_opener(urllib.request.ProxyHandler({}), urllib.request.HTTPSHandler(context=ctx))
port = os.environ["PORT"]
for url in (f"https://api.egress.test:{port}/python-by-name", f"https://192.0.2.10:{port}/python-by-address"):
    with opener.open(url, timeout=20) as r:
        print("python:", r.status, r.read().decode())
