#!/bin/sh
# The hello app: a web page on port 8080, and two tries at the network through odyn's egress
# proxy (http_proxy is set by odyn): one the policy allows, one it refuses.
echo "hello: serving /www on port 8080"
httpd -f -p 8080 -h /www &
sleep 1
echo "hello: GET http://host:18081/ (allowed: \"host\" is on the allow list)"
wget -q -O - http://host:18081/ 2>&1
echo "hello: GET http://example.com/ (not on the allow list)"
wget -q -O - http://example.com/ 2>&1
wait
