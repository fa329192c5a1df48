#!/usr/bin/env bash
# Installs what building, running, testing and benchmarking Marquee need:
# Debian packages first, then the npm tooling of tests/tools/ into build/node/.
# Each step runs only when something is missing or stale, so a second run is
# quick and prints one line.  Runs from any directory.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

packages=(
    # build
    gcc make pkg-config
    libh2o-evloop-dev libjansson-dev libsqlite3-dev libssl-dev zlib1g-dev
    # messaging over RabbitMQ, e-ticket QR codes, password hashing
    librabbitmq-dev libqrencode-dev libsodium-dev
    # run and inspect
    sqlite3 curl
    # tests: tests/run.py, the integration suites, the API lint
    python3 python3-yaml python3-jsonschema nodejs npm
    # tests: the ops dashboard is opened in headless Chromium (playwright-core)
    chromium
    # tests: a real Prometheus scrapes the services; promtool and amtool
    # check the alert rules and the Alertmanager configuration
    prometheus prometheus-alertmanager
    # tests: the messaging suite runs again on a real RabbitMQ broker
    rabbitmq-server
    # benchmarks: the anchor servers and the load generators
    nginx-light haproxy wrk postgresql postgresql-contrib
)

tools_dir=tests/tools
node_dir=build/node
stamp="$node_dir/.deps-stamp"

# Prints the packages of the list above that dpkg does not report installed.
missing_packages() {
    local pkg status
    for pkg in "${packages[@]}"; do
        # NodeSource's nodejs bundles npm and conflicts with Debian's npm
        # package: asking apt for "npm" there would replace Node.js itself.
        if [[ $pkg == npm ]] && command -v npm >/dev/null; then
            continue
        fi
        status=$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)
        if [[ $status != "install ok installed" ]]; then
            printf '%s\n' "$pkg"
        fi
    done
}

install_packages() {
    local sudo=()
    if [[ $EUID -ne 0 ]]; then
        if ! command -v sudo >/dev/null; then
            echo "deps: not root and no sudo; install these: $*" >&2
            exit 1
        fi
        sudo=(sudo)
    fi
    echo "deps: installing Debian packages: $*"
    "${sudo[@]}" apt-get update -q
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -q --no-install-recommends "$@"
}

# The fingerprint of the committed npm manifest and lock; a change of either
# reinstalls the tooling.
tools_fingerprint() {
    cat "$tools_dir/package.json" "$tools_dir/package-lock.json" |
        sha256sum | cut -d' ' -f1
}

install_node_tools() {
    # The pinned @redocly/cli needs Node.js 20.19 or later; npm ci would only
    # warn, and the lint would fail later with a less clear message.
    if ! node -e 'const [a, b] = process.versions.node.split(".").map(Number);
                  process.exit(a > 20 || (a === 20 && b >= 19) ? 0 : 1)'; then
        echo "deps: warning: Node.js $(node --version) is older than" \
            "$tools_dir/package.json needs (20.19)" >&2
    fi

    echo "deps: installing npm tooling into $node_dir (npm ci)"
    mkdir -p "$node_dir"
    rm -f "$stamp"
    cp "$tools_dir/package.json" "$tools_dir/package-lock.json" "$node_dir/"
    (cd "$node_dir" &&
        npm ci --no-audit --no-fund --no-update-notifier --loglevel=error)
    tools_fingerprint >"$stamp"
}

main() {
    local missing=() installed=""

    mapfile -t missing < <(missing_packages)
    if ((${#missing[@]} > 0)); then
        install_packages "${missing[@]}"
        installed="Debian packages (${missing[*]})"
    fi

    if [[ ! -x $node_dir/node_modules/.bin/redocly ]] ||
        [[ ! -f $stamp ]] ||
        [[ $(cat "$stamp") != "$(tools_fingerprint)" ]]; then
        install_node_tools
        installed="${installed:+$installed and }npm tooling"
    fi

    if [[ -z $installed ]]; then
        echo "deps: ${#packages[@]} Debian packages and npm tooling present"
    else
        echo "deps: installed $installed"
    fi
}

main "$@"
