"""Scoring with the official COCO protocol: COCOeval (whole and streamed), the results file, the
`compute_metrics` hook, error analysis, plots, scoring a results file and evaluating a checkpoint."""
