#!/usr/bin/env bash
# The Debian package as a player gets it: built from the debug build (`cargo xtask package --profile dev`; CI has
# that build already from `cargo test`), installed with apt (which checks that every dependency it names exists),
# and run from the installed files alone, from a folder outside the checkout with NEURALBOARD_ASSETS unset. The
# installed binary must find its models and presets in /usr/share/neuralboard, not in the checkout it was built
# from (which a debug build still knows the path of). Then the desktop entry is validated, the archive
# (`--tarball`) is unpacked and run the same way, and the package is removed.
#
# Skips (exit 0, saying why) where it cannot run: no dpkg (not Debian/Ubuntu), not root and no password-less sudo,
# or Neuralboard already installed on a developer's machine (this test would replace it, then remove it).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/../.."
name=90-package

say() { echo "$name: $*"; }
skip() {
    say "SKIP: $*"
    exit 0
}
fail() {
    say "FAIL: $*" >&2
    exit 1
}

command -v dpkg >/dev/null && command -v apt-get >/dev/null || skip "no dpkg/apt-get: not Debian or Ubuntu"
if [[ $(id -u) -eq 0 ]]; then
    as_root=()
elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
    as_root=(sudo -n)
else
    skip "installing a package needs root; run as root or with password-less sudo"
fi
if dpkg-query -W -f='${Status}' neuralboard 2>/dev/null | grep -q 'ok installed' && [[ ${CI:-} != true ]]; then
    skip "neuralboard is already installed here and this test would replace and remove it (dpkg -r neuralboard first)"
fi
command -v desktop-file-validate >/dev/null ||
    fail "desktop-file-validate is missing: run this through \`cargo xtask test\` (it installs desktop-file-utils)"

started=$SECONDS
work=$(mktemp -d)
installed=false
cleanup() {
    if $installed; then
        "${as_root[@]}" dpkg -r neuralboard >/dev/null || say "could not remove the package: dpkg -r neuralboard" >&2
    fi
    rm -rf "$work"
}
trap cleanup EXIT

# The frames, sample rate and channels of a WAV file, read from its header: "FRAMES RATE CHANNELS".
wav_info() {
    local file=$1 offset=12 size id channels=0 rate=0 bits=0
    u32() { od -A n -t u4 -j "$1" -N 4 "$file" | tr -d ' '; }
    u16() { od -A n -t u2 -j "$1" -N 2 "$file" | tr -d ' '; }
    [[ $(head -c 4 "$file") == RIFF ]] || return 1
    while :; do
        id=$(dd if="$file" bs=1 skip="$offset" count=4 status=none)
        size=$(u32 $((offset + 4)))
        [[ -n $id && -n $size ]] || return 1
        case $id in
            "fmt ")
                channels=$(u16 $((offset + 10)))
                rate=$(u32 $((offset + 12)))
                bits=$(u16 $((offset + 22)))
                ;;
            data)
                ((channels > 0 && bits > 0)) || return 1
                echo "$((size / (channels * bits / 8))) $rate $channels"
                return 0
                ;;
        esac
        offset=$((offset + 8 + size + size % 2))
    done
}

say "building the package from the dev profile"
built=$(cargo xtask package --profile dev --tarball)
deb=$(sed -n 1p <<<"$built")
archive=$(sed -n 2p <<<"$built")
[[ -f $deb && -f $archive ]] || fail "cargo xtask package printed '$built', not a package and an archive"
say "built $deb ($(du -h "$deb" | cut -f1)) and $(basename "$archive") in $((SECONDS - started)) s"

upstream_version=$(dpkg-deb -f "$deb" Version)
upstream_version=${upstream_version%-*}
contents=$(dpkg-deb -c "$deb")
for path in ./usr/bin/neuralboard ./usr/share/applications/neuralboard.desktop \
    ./usr/share/icons/hicolor/scalable/apps/neuralboard.svg ./usr/share/icons/hicolor/48x48/apps/neuralboard.png \
    ./usr/share/neuralboard/presets/clean-practice.ron ./usr/share/neuralboard/assets/models/amp/crunch-wavenet.nam \
    ./usr/share/neuralboard/assets/ir/4x12-closed.wav; do
    grep -q " $path\$" <<<"$contents" || fail "$path is not in the package"
done
for preset in presets/*.ron; do
    grep -q " ./usr/share/neuralboard/$preset\$" <<<"$contents" || fail "$preset is not in the package"
done

# apt rather than dpkg -i: it installs from the file as a player would (`apt install ./neuralboard_….deb`), and
# fails if a dependency the package names does not exist. --no-install-recommends keeps the machine as it was.
"${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$deb" >"$work/apt.log" 2>&1 ||
    {
        cat "$work/apt.log" >&2
        fail "the package did not install"
    }
installed=true
say "installed"

# Only the installed files from here on: a folder outside the checkout, a fresh home, no NEURALBOARD_ASSETS, the
# binary by its installed path.
cd "$work"
unset NEURALBOARD_ASSETS
export NEURALBOARD_HOME="$work/home"
bin=/usr/bin/neuralboard

# The package's version less the Debian revision (0.1.0-1~dev: 0.1.0) is the crate's, which --version shows.
version=$("$bin" --version)
[[ $version == "neuralboard $upstream_version" ]] || fail "--version says '$version', the package is $upstream_version"
say "$version"

factory=$("$bin" paths | sed -n 's/^factory: *//p')
[[ $factory == /usr/share/neuralboard/presets ]] ||
    fail "the installed binary takes its factory presets from '$factory', not /usr/share/neuralboard/presets"

"$bin" corpus --seed 7 --seconds 2 --rate 48000 in.wav >/dev/null
# A preset with an amp model and an impulse response from /usr/share/neuralboard (and a modulation pedal): a file
# that is not found is a warning and a pass-through pedal, so any warning fails the test.
"$bin" render --preset /usr/share/neuralboard/presets/jet-flanger.ron in.wav out.wav >render.log 2>&1 ||
    {
        cat render.log >&2
        fail "render failed"
    }
if grep -qi warning render.log; then
    cat render.log >&2
    fail "render warned: the installed files are incomplete"
fi
read -r in_frames in_rate _ < <(wav_info in.wav) || fail "in.wav is not a WAV file"
read -r out_frames out_rate _ < <(wav_info out.wav) || fail "out.wav is not a WAV file"
[[ $in_frames -eq 96000 && $out_frames -eq $in_frames && $out_rate -eq $in_rate ]] ||
    fail "out.wav has $out_frames frames at $out_rate Hz; in.wav $in_frames at $in_rate Hz"
say "rendered jet-flanger.ron from the installed files: $out_frames frames at $out_rate Hz"

desktop-file-validate /usr/share/applications/neuralboard.desktop || fail "the desktop entry is not valid"

# The archive, unpacked anywhere, finds its files in the share/ beside its bin/ (even with the package installed).
mkdir unpacked
tar -C unpacked -xzf "$archive"
root=$(echo "$work"/unpacked/*)
factory=$("$root/bin/neuralboard" paths | sed -n 's/^factory: *//p')
[[ $factory == "$root/share/neuralboard/presets" ]] || fail "the unpacked archive's binary uses '$factory'"
"$root/bin/neuralboard" render --preset "$factory/crunch-rhythm.ron" in.wav out-archive.wav >render.log 2>&1 ||
    {
        cat render.log >&2
        fail "render from the unpacked archive failed"
    }
if grep -qi warning render.log; then
    cat render.log >&2
    fail "render from the unpacked archive warned: its files are incomplete"
fi
say "rendered crunch-rhythm.ron from the unpacked archive"

"${as_root[@]}" dpkg -r neuralboard >/dev/null
installed=false
[[ ! -e $bin && ! -e /usr/share/neuralboard ]] || fail "dpkg -r left files behind"
say "removed; took $((SECONDS - started)) s"
