"""Step-up verification: TOTP, emailed codes, recovery codes, and the assurance token a
passed verification earns. ``services.StepUp`` is the one entry point; the other modules
hold the mechanics of one factor each.
"""
