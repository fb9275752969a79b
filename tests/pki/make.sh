#!/usr/bin/env bash
# Makes the test PKI that tests/common/tls.rs serves from. The files are
# committed, so that the tests need neither this script nor a
# certificate library: a CA with two server certificates it signed
# (`first` and `second`, for localhost, 127.0.0.1 and ::1), a client CA
# with one client certificate (`client one`), and a stranger's CA with
# one client certificate the server does not trust. ECDSA P-256 keys
# (PKCS#8). Rerun it to replace them all:
#
#   tests/pki/make.sh
set -euo pipefail
cd "$(dirname "$0")"
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT

# Valid from 2000 to the end of 9999 (RFC 5280's "no well-defined
# expiration date"), so that no clock, however wrong, fails the tests.
cat >"$scratch/ca.cnf" <<CNF
[ca]
default_ca = ca
[ca]
database = $scratch/index
new_certs_dir = $scratch
rand_serial = yes
default_md = sha256
policy = any
unique_subject = no
email_in_dn = no
[any]
commonName = supplied
CNF
: >"$scratch/index"

# cert NAME KEY_OUT CERT_OUT [ISSUER ISSUER_KEY server|client]: a new key
# and its certificate; with no issuer, a self-signed CA.
cert() {
    local name=$1 key=$2 out=$3 issuer=${4:-} issuer_key=${5:-} kind=${6:-}
    openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$key"
    {
        echo "[req]"
        echo "distinguished_name = dn"
        echo "prompt = no"
        echo "[dn]"
        echo "CN = $name"
        echo "[ext]"
        echo "subjectKeyIdentifier = hash"
        case "$kind" in
            "")
                echo "basicConstraints = critical, CA:TRUE"
                echo "keyUsage = critical, keyCertSign, cRLSign"
                ;;
            server)
                echo "authorityKeyIdentifier = keyid"
                echo "basicConstraints = critical, CA:FALSE"
                echo "keyUsage = critical, digitalSignature"
                echo "extendedKeyUsage = serverAuth"
                echo "subjectAltName = DNS:localhost, IP:127.0.0.1, IP:::1"
                ;;
            client)
                echo "authorityKeyIdentifier = keyid"
                echo "basicConstraints = critical, CA:FALSE"
                echo "keyUsage = critical, digitalSignature"
                echo "extendedKeyUsage = clientAuth"
                ;;
        esac
    } >"$scratch/ext.cnf"
    openssl req -new -key "$key" -config "$scratch/ext.cnf" -out "$scratch/csr"
    local signer=(-selfsign -keyfile "$key")
    if [ -n "$issuer" ]; then
        signer=(-cert "$issuer" -keyfile "$issuer_key")
    fi
    openssl ca -batch -notext -config "$scratch/ca.cnf" "${signer[@]}" \
        -extfile "$scratch/ext.cnf" -extensions ext \
        -startdate 20000101000000Z -enddate 99991231235959Z \
        -in "$scratch/csr" -out "$out" 2>"$scratch/log" \
        || { cat "$scratch/log" >&2; exit 1; }
}

cert "socketserver test CA" "$scratch/ca-key.pem" ca.pem
cert first key.pem cert.pem ca.pem "$scratch/ca-key.pem" server
cert second key2.pem cert2.pem ca.pem "$scratch/ca-key.pem" server
cert "socketserver test client CA" "$scratch/client-ca-key.pem" client-ca.pem
cert "client one" client-key.pem client.pem client-ca.pem "$scratch/client-ca-key.pem" client
cert "stranger CA" "$scratch/stranger-ca-key.pem" "$scratch/stranger-ca.pem"
cert stranger stranger-key.pem stranger.pem "$scratch/stranger-ca.pem" "$scratch/stranger-ca-key.pem" client
