#!/usr/bin/env bash
# Installs everything the test suite needs on a fresh Debian machine (README's test command runs it
# before `cargo test`; so does CI): Debian packages, then the offline engines and the recordings
# with their transcripts. Each part is pinned and idempotent; nothing else is fetched at build,
# test or run time. Runs apt-get as root, or through sudo when not root.
set -euo pipefail
cd "$(dirname "$0")/.."

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

# Debian packages: the PocketSphinx engine and its test clips (LibriVox, goforward.raw), the
# Asterisk telephone prompts, what the offline engine's installer needs, the deployment checks'
# tools (HAProxy in front of real instances, systemd-analyze for the unit), `kill` (procps: the
# tests stop and pause real processes with it), and headless Chromium
# for the web page's tests (tests/web_page.rs drives it over the DevTools protocol itself: no
# chromedriver, no npm; it starts it with every network feature off and a fake microphone).
DEBIAN_PACKAGES=(
    python3-pip python3-venv unzip
    libpocketsphinx3 pocketsphinx-en-us pocketsphinx-testdata
    asterisk-core-sounds-en-wav
    haproxy systemd
    chromium
    procps
)
as_root env DEBIAN_FRONTEND=noninteractive apt-get update
as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y "${DEBIAN_PACKAGES[@]}"

# Moonshine model + ONNX Runtime (pinned PyPI wheels) and the Asterisk prompts' transcripts.
scripts/setup-offline-engine.sh --test-data

# Python tools of the tests, each in a venv of its own under target/test-env, pinned by hash.
python_tool() { # NAME: installs scripts/test-requirements/NAME.txt into target/test-env/NAME
    local venv="target/test-env/$1"
    [ -x "$venv/bin/python" ] || python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check --require-hashes --no-deps \
        -r "scripts/test-requirements/$1.txt"
}
# The Kubernetes manifests' schema check (deploy/kubernetes, tests/deploy_files.rs).
python_tool kubernetes-validate

# The vendors' official SDKs that the dialect tests run unchanged (tests/dialect_deepgram.rs,
# tests/dialect_openai.rs): Deepgram's and OpenAI's Python packages and everything they pull in,
# pinned with hashes in tests/sdk/requirements.txt, in a venv under target/ (the tests look for
# target/sdk-venv/bin/python; VOXGATE_SDK_PYTHON overrides it). Skipped when already installed.
if ! target/sdk-venv/bin/python -c 'import deepgram, openai' 2>/dev/null; then
    python3 -m venv target/sdk-venv
    target/sdk-venv/bin/pip install --quiet --require-hashes --only-binary :all: \
        -r tests/sdk/requirements.txt
fi
