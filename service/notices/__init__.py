"""Messages to people: the outbox, campaigns, rendering from templates, and transport.

``outbox`` creates rows and moves them through their states; ``campaigns`` lets an
operator pause a leak's warnings; ``render`` turns a row into one message for one
recipient; ``transport`` hands it to an SMTP server or a mail folder; ``preview`` shows and
test-sends a leak's warning.
"""
