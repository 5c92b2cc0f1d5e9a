"""Measurements of any model through its sites: probe statistics and Jacobian spectra."""
