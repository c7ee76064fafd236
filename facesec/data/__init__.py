"""Face data: identity-folder datasets, detection, landmarks, alignment and the crop cache."""
