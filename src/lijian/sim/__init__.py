"""The campaign simulator: a synthetic population runs a campaign through the real engine."""
