"""Advice: device specs + a profile -> an assignment of sites to devices -> a policy file."""
