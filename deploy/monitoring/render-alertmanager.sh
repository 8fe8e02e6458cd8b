#!/usr/bin/env bash
# Renders alertmanager.yml.tmpl with the webhook URLs from the environment and checks
# the result with amtool.
#
#   KURZ_PAGER_WEBHOOK_URL=https://… KURZ_CHAT_WEBHOOK_URL=https://… \
#       bash deploy/monitoring/render-alertmanager.sh /etc/alertmanager/alertmanager.yml
#
# Only these two variables are substituted (envsubst with an explicit list), so any other
# `$` in the file is left alone. Fails if either is unset or empty, or amtool rejects the
# result; the output file is written with mode 600 (the URLs are secrets).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
out=${1:?usage: render-alertmanager.sh OUTPUT_FILE}
: "${KURZ_PAGER_WEBHOOK_URL:?set KURZ_PAGER_WEBHOOK_URL (the pager webhook)}"
: "${KURZ_CHAT_WEBHOOK_URL:?set KURZ_CHAT_WEBHOOK_URL (the chat webhook)}"
for v in "$KURZ_PAGER_WEBHOOK_URL" "$KURZ_CHAT_WEBHOOK_URL"; do
    # A quote or newline would end the YAML string the URL is put in.
    if [[ $v == *"'"* || $v == *$'\n'* ]]; then
        echo "webhook URLs may not contain a single quote or a newline" >&2
        exit 1
    fi
done
command -v envsubst >/dev/null || { echo "envsubst missing (Debian: apt-get install gettext-base)" >&2; exit 1; }
command -v amtool >/dev/null || { echo "amtool missing (Debian: apt-get install prometheus-alertmanager)" >&2; exit 1; }
tmp=$(mktemp "$out.XXXXXX")
trap 'rm -f "$tmp"' EXIT
chmod 600 "$tmp"
envsubst '${KURZ_PAGER_WEBHOOK_URL} ${KURZ_CHAT_WEBHOOK_URL}' <"$here/alertmanager.yml.tmpl" >"$tmp"
amtool check-config "$tmp" >/dev/null
mv "$tmp" "$out"
trap - EXIT
