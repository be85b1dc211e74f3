"""Learning from many clinics: pooled kiosk exports, leave-site-out folds, safe model promotion."""
