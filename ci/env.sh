# shellcheck shell=bash
# Shared set-up for ci/demo, ci/test and the integration tests: installs the Debian packages,
# and (keygate_env) creates a throw-away SoftHSM2 root token plus a keygate configuration.
# Test PINs below are throw-away values for throw-away stores.

SOFTHSM_MODULE=/usr/lib/softhsm/libsofthsm2.so

install_packages() {
    local need=()
    for p in "$@"; do
        dpkg -s "$p" >/dev/null 2>&1 || need+=("$p")
    done
    if [ ${#need[@]} -gt 0 ]; then
        echo "== installing ${need[*]}"
        export DEBIAN_FRONTEND=noninteractive
        local sudo=""
        [ "$(id -u)" -eq 0 ] || sudo="sudo"
        $sudo apt-get update -qq
        $sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
    fi
}

# keygate_env DIR [HSM_USER_PIN]: a SoftHSM2 token "keygate-root" and a keygate config with one
# self-managed token "demo" in DIR. With HSM_USER_PIN, also a SoftHSM2 token "demo-backend"
# (user PIN HSM_USER_PIN) and an hsm-mode keygate token "demo-hsm" forwarding to it.
# KEYGATE_ENV_TOKEN_LINES, if set, is added to each token's table (a policy line, say).
# Exports SOFTHSM2_CONF, KEYGATE_CONF, KEYGATE_ROOT_PIN.
keygate_env() {
    local dir=$1 repo
    repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
    mkdir -p "$dir/tokens"
    sed "s|@TOKENDIR@|$dir/tokens|" "$repo/softhsm-conf/softhsm2.conf.in" > "$dir/softhsm2.conf"
    export SOFTHSM2_CONF="$dir/softhsm2.conf"
    export KEYGATE_ROOT_PIN=root-pin-0000
    softhsm2-util --init-token --free --label keygate-root --so-pin root-so-0000 --pin "$KEYGATE_ROOT_PIN" >/dev/null
    cat > "$dir/keygate.toml" <<TOML
[[token]]
label = "demo"
mode = "self-managed"
store = "$dir/demo.db"
root = { module = "$SOFTHSM_MODULE", token = "keygate-root", pin_env = "KEYGATE_ROOT_PIN" }
${KEYGATE_ENV_TOKEN_LINES:-}
TOML
    if [ -n "${2:-}" ]; then
        softhsm2-util --init-token --free --label demo-backend --so-pin hsm-so-0000 --pin "$2" >/dev/null
        cat >> "$dir/keygate.toml" <<TOML

[[token]]
label = "demo-hsm"
mode = "hsm"
hsm = { module = "$SOFTHSM_MODULE", token = "demo-backend" }
${KEYGATE_ENV_TOKEN_LINES:-}
TOML
    fi
    chmod 600 "$dir/keygate.toml"
    export KEYGATE_CONF="$dir/keygate.toml"
}
