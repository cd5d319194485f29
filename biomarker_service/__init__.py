"""GPU tier: turns lung-ultrasound cine loops into biomarker vectors over gRPC."""
