"""gRPC plumbing shared by both tiers: error mapping, health, reflection, channel options."""
