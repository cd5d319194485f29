"""CPU tier: task experts that answer clinical questions from biomarker vectors over gRPC."""
