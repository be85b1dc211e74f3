"""A film coming in: checking the upload and its case reference, scoring and recording it, refusals."""
