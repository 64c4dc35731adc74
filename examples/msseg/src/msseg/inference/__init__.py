"""Inference: the one path from a scan to its lesion mask on the scan's own grid."""
