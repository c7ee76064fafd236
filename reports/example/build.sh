#!/usr/bin/env bash
# Rebuilds reports/example/: one small suite with a run of every attack family, faces redacted, so that an
# auditor can open a real report without installing anything. Only the self-contained index.html and
# results.json are kept: the run folders hold face crops (biometric data, CelebA's research-only licence).
# Needs celeba-mini under $FACESEC_DATA and the fetched models (README: Quick start); 10 min on 2 cores (warm face cache).
set -euo pipefail
cd "$(dirname "$0")/../.."
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# one morph run (alpha 0.5, lookalike pairs), not the example's 6: the report stays a few MB
sed -e 's/^  alpha: .*/  alpha: 0.5/' -e 's/^  pairing: .*/  pairing: lookalike/' threat_models/morph-landmark.yaml \
  > "$work/morph-landmark.yaml"
status=0
facesec run threat_models/quickstart.yaml threat_models/accessory-eyeglasses-dodging.yaml \
  "$work/morph-landmark.yaml" threat_models/inversion-template.yaml \
  threat_models/backdoor-makeup-impersonation.yaml \
  --suite example --out "$work" --redact || status=$?
[ "$status" -le 1 ] || exit "$status"   # 1: a gate failed, as the examples intend; anything else is an error
cp "$work/example/index.html" "$work/example/results.json" reports/example/
echo "reports/example/index.html rebuilt"
