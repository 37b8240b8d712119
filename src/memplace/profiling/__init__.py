"""Profiling: the profile model, the two engines (runtime, DHAT), merging and symbolizing."""
