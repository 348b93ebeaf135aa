"""Leakguard: account protection after a third-party leak of email addresses."""
