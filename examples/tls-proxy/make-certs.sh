#!/bin/sh
# A throwaway CA and a certificate for localhost signed by it, for trying
# examples/tls-proxy: certs/ca.pem (give it to clients: curl --cacert),
# certs/localhost.pem and certs/localhost.key (the service's).  Not for
# production: use your CA's certificate there.
set -e
dir=${1:-$(dirname "$0")/certs}
mkdir -p "$dir"
cd "$dir"
umask 077
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
    -keyout ca.key -out ca.pem -days 30 -subj "/CN=socketnaut example CA" \
    2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
    -keyout localhost.key -out localhost.csr -subj "/CN=localhost" 2>/dev/null
printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\n' > localhost.ext
openssl x509 -req -in localhost.csr -CA ca.pem -CAkey ca.key \
    -CAcreateserial -out localhost.pem -days 30 -extfile localhost.ext \
    2>/dev/null
rm -f localhost.csr localhost.ext ca.srl
chmod 644 ca.pem localhost.pem
echo "made $dir/ca.pem, $dir/localhost.pem and $dir/localhost.key"
