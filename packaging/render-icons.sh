#!/usr/bin/env bash
# Renders the icon, hicolor/scalable/apps/neuralboard.svg, to the PNG sizes desktops look for (16 to 256 px) in
# hicolor/SIZExSIZE/apps/neuralboard.png. The folder is laid out as the icon theme it is installed into
# (/usr/share/icons/hicolor). The PNGs are committed, so packaging needs no SVG renderer: run this again after
# changing the SVG, and commit what it writes.
#
# Needs rsvg-convert (Debian: apt-get install librsvg2-bin).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/hicolor"

if ! command -v rsvg-convert >/dev/null; then
    echo "render-icons: rsvg-convert is missing; install it with: apt-get install librsvg2-bin" >&2
    exit 1
fi

for size in 16 22 24 32 48 64 128 256; do
    mkdir -p "${size}x${size}/apps"
    rsvg-convert --width "$size" --height "$size" --output "${size}x${size}/apps/neuralboard.png" \
        scalable/apps/neuralboard.svg
    echo "packaging/hicolor/${size}x${size}/apps/neuralboard.png"
done
