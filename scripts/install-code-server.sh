#!/usr/bin/env bash
# Installs code-server (a real VS Code workbench served to a browser) under
# .cache/code-server for the UI tests in test/e2e/. Idempotent: a finished
# install is recognised by its marker file and left alone.
#
# code-server's own postinstall downloads ripgrep from GitHub, which this kind
# of machine cannot reach, so the install runs with --ignore-scripts and the
# steps of its postinstall.sh are done here by hand (see shared TESTING notes).
# Needs Debian's build-essential python3 libkrb5-dev ripgrep.
set -euo pipefail

VERSION="${CODE_SERVER_VERSION:-4.100.3}"
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
DEST="${CODE_SERVER_CACHE:-$ROOT/.cache/code-server}"
MARKER="$DEST/.installed-$VERSION"
CS="$DEST/node_modules/code-server"

if [[ -f "$MARKER" && -f "$CS/out/node/entry.js" ]]; then
  echo "code-server $VERSION already installed in $DEST"
  exit 0
fi

for cmd in rg make g++ python3; do
  command -v "$cmd" >/dev/null || { echo "install-code-server: missing $cmd (apt-get install build-essential python3 libkrb5-dev ripgrep)" >&2; exit 1; }
done

# node-pty's build step runs `npx node-gyp`, which npm cancels when yes=false.
export npm_config_yes=true
export npm_config_audit=false
export npm_config_fund=false
export npm_config_update_notifier=false

mkdir -p "$DEST"
rm -f "$DEST"/.installed-*
cd "$DEST"
[[ -f package.json ]] || echo '{ "name": "capsa-code-server-cache", "private": true }' > package.json

echo "install-code-server: npm install code-server@$VERSION (scripts off)"
npm install --no-save --ignore-scripts "code-server@$VERSION"
npm rebuild argon2

echo "install-code-server: lib/vscode dependencies"
cd "$CS/lib/vscode"
npm install --omit=dev --ignore-scripts
# @vscode/ripgrep's postinstall skips its download when the binary is present.
mkdir -p node_modules/@vscode/ripgrep/bin
cp -f "$(command -v rg)" node_modules/@vscode/ripgrep/bin/rg
npm rebuild

# The rest of code-server's postinstall.sh.
[[ -e node_modules.asar ]] || ln -s node_modules node_modules.asar
ln -sf code-linux.sh bin/remote-cli/code-server
ln -sf browser-linux.sh bin/helpers/browser.sh

echo "install-code-server: built-in extensions' dependencies"
cd "$CS/lib/vscode/extensions"
npm install --omit=dev

touch "$MARKER"
echo "code-server $VERSION installed in $DEST (run $CS/out/node/entry.js)"
