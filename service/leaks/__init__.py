"""Leaks: the catalogue, the exposures they cause, the passwords that leaked with them."""
