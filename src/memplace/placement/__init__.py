"""Placement: memory devices, allocation sites, policies (TOML -> compiled table), a run under a policy and its statistics."""
