"""gRPC plumbing shared by both tiers: error mapping, health, reflection, channel options,
request ids and structured logs (``logging``), RPC metrics and the metrics port (``metrics``)."""
