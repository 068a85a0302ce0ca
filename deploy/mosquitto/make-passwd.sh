#!/bin/sh
# Build Mosquitto's password file from the Compose secrets (service users) and an optional sensors
# file ("username password" per line; # comments). mosquitto_passwd -b hashes every password, so no
# plain password stays on the broker's volume. Runs once before the broker starts (mosquitto-auth).
set -eu

SECRETS_DIR="${SECRETS_DIR:-/run/secrets}"
SENSORS_FILE="${SENSORS_FILE:-/mosquitto/sensors.txt}"
OUT="${PASSWD_FILE:-/mosquitto/auth/passwd}"

tmp="$(mktemp)"
trap 'rm -f "$tmp"' EXIT

add_user() {  # user password  (-b: any character may appear in the password, ':' included)
    mosquitto_passwd -b "$tmp" "$1" "$2"
}

add_secret_user() {  # user secret-name
    if [ ! -s "$SECRETS_DIR/$2" ]; then
        echo "make-passwd: secret $2 is missing or empty (set it in deploy/.env)" >&2
        exit 1
    fi
    add_user "$1" "$(cat "$SECRETS_DIR/$2")"
}

add_secret_user heatwatch-collector mqtt_collector_password
add_secret_user heatwatch-service mqtt_service_password
if [ -s "$SECRETS_DIR/mqtt_simulator_password" ]; then
    add_secret_user heatwatch-simulator mqtt_simulator_password
fi

sensors=0
if [ -f "$SENSORS_FILE" ]; then
    while read -r user pass rest; do
        case "$user" in ''|'#'*) continue ;; esac
        if [ -z "$pass" ] || [ -n "$rest" ]; then
            echo "make-passwd: $SENSORS_FILE: expected 'username password' for $user" >&2
            exit 1
        fi
        add_user "$user" "$pass"
        sensors=$((sensors + 1))
    done < "$SENSORS_FILE"
fi

mkdir -p "$(dirname "$OUT")"
chmod 0640 "$tmp"
chown mosquitto:mosquitto "$tmp" 2>/dev/null || true
mv "$tmp" "$OUT"
trap - EXIT
echo "make-passwd: wrote $OUT (service users and $sensors sensor(s))"
