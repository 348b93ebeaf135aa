"""Leakguard's own pages for people (not the /v1 API): the email-change link pages."""
