"""Differential privacy: mechanisms, accounting, local and central DP, auditing."""
