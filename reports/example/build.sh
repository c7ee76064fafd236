#!/usr/bin/env bash
# Rebuilds reports/example/: one small suite with a run of every attack family, faces redacted, so that an
# auditor can open a real report without installing anything. Only the self-contained index.html and
# results.json are kept: the run folders hold face crops (biometric data, CelebA's research-only licence).
# Needs celeba-mini under $FACESEC_DATA and the fetched models (README: Quick start); about 15 min on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/../.."
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# one morph run (alpha 0.5, lookalike pairs), not the example's 6: the report stays a few MB; 50 more gallery
# identities instead of 150, so that the subjects, the gallery and the calibration fit in celeba-mini's 249
sed -e 's/^  alpha: .*/  alpha: 0.5/' -e 's/^  pairing: .*/  pairing: lookalike/' \
  -e 's/^  calibration_identities: .*/  calibration_identities: 50/' threat_models/morph-landmark.yaml \
  > "$work/morph-landmark.yaml"
# the quickstart on three confirmation draws of people (seeds 100-102), which the report pools
sed -e 's/seed: 0}/seed: [100, 101, 102]}/' threat_models/quickstart.yaml > "$work/quickstart.yaml"
status=0
# every run judged at one operating point per recognizer: thresholds from the same 100 identities (calibration
# seed 0), drawn first and left out of every run
facesec run "$work/quickstart.yaml" threat_models/accessory-eyeglasses-dodging.yaml \
  "$work/morph-landmark.yaml" threat_models/inversion-template.yaml \
  threat_models/backdoor-makeup-impersonation.yaml \
  --set setting.calibration.identities=100 --set setting.calibration.seed=0 \
  --suite example --out "$work" --redact || status=$?
[ "$status" -le 1 ] || exit "$status"   # 1: a gate failed, as the examples intend; anything else is an error
cp "$work/example/index.html" "$work/example/results.json" reports/example/
echo "reports/example/index.html rebuilt"
