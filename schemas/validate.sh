#!/usr/bin/env bash
# Validate Shokai bank-protocol XML documents with xmllint (libxml2-utils).
#
#   schemas/validate.sh                 validate every schemas/examples/*.xml
#   schemas/validate.sh FILE...         validate the given files
#
# The schema is chosen from the root element (namespace + local name):
#   b:InqryBtch, b:BtchRct, b:AnswBtch, b:AnswBtchRct, b:PdgBtchs -> shokai.batch.001.01.xsd
#     (this imports head.001, auth.001, auth.002 and the jpdpst profile, so the
#      ISO documents and the jp: supplementary documents inside are validated
#      in the same pass)
#   jp:InqryDtls, jp:DpstRpt                          -> shokai.jpdpst.001.01.xsd
#   h:AppHdr, auth.001/002/003 Document               -> iso/*.xsd
# Exits non-zero if any file fails. Works from any directory.
set -u

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

if ! command -v xmllint >/dev/null 2>&1; then
  echo "validate.sh: xmllint not found (apt-get install libxml2-utils)" >&2
  exit 2
fi

if [ "$#" -eq 0 ]; then
  shopt -s nullglob
  set -- "$here"/examples/*.xml
  if [ "$#" -eq 0 ]; then
    echo "validate.sh: no files in $here/examples" >&2
    exit 2
  fi
fi

schema_for() {
  case "$1" in
    "{urn:shokai:xsd:batch.001.01}InqryBtch" | \
    "{urn:shokai:xsd:batch.001.01}BtchRct" | \
    "{urn:shokai:xsd:batch.001.01}AnswBtch" | \
    "{urn:shokai:xsd:batch.001.01}AnswBtchRct" | \
    "{urn:shokai:xsd:batch.001.01}PdgBtchs")
      echo "$here/shokai.batch.001.01.xsd" ;;
    "{urn:shokai:xsd:jpdpst.001.01}InqryDtls" | \
    "{urn:shokai:xsd:jpdpst.001.01}DpstRpt")
      echo "$here/shokai.jpdpst.001.01.xsd" ;;
    "{urn:iso:std:iso:20022:tech:xsd:head.001.001.01}AppHdr")
      echo "$here/iso/head.001.001.01.xsd" ;;
    "{urn:iso:std:iso:20022:tech:xsd:auth.001.001.01}Document")
      echo "$here/iso/auth.001.001.01.xsd" ;;
    "{urn:iso:std:iso:20022:tech:xsd:auth.002.001.01}Document")
      echo "$here/iso/auth.002.001.01.xsd" ;;
    "{urn:iso:std:iso:20022:tech:xsd:auth.003.001.01}Document")
      echo "$here/iso/auth.003.001.01.xsd" ;;
    *) return 1 ;;
  esac
}

failed=0
for f in "$@"; do
  if [ ! -f "$f" ]; then
    echo "FAIL $f: no such file" >&2
    failed=1
    continue
  fi
  root="$(xmllint --nonet --xpath 'concat("{", namespace-uri(/*), "}", local-name(/*))' "$f" 2>/dev/null)"
  if [ -z "$root" ]; then
    echo "FAIL $f: not well-formed XML" >&2
    xmllint --nonet --noout "$f" >&2
    failed=1
    continue
  fi
  if ! schema="$(schema_for "$root")"; then
    echo "FAIL $f: unknown root element $root" >&2
    failed=1
    continue
  fi
  if xmllint --nonet --noout --schema "$schema" "$f" 2>/dev/null; then
    echo "ok   $f ($root)"
  else
    echo "FAIL $f ($root) against ${schema#"$here"/}:" >&2
    xmllint --nonet --noout --schema "$schema" "$f" >/dev/null
    failed=1
  fi
done
exit "$failed"
