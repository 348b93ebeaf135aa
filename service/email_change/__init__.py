"""The protected email change for the login service (issue 14, part 2). Free of Flask.

A change needs a fresh step-up (an assurance token, spent once), proves the new mailbox
(a single-use confirmation link, 24 h), tells the old mailbox with a single-use revert
link (7 days, also after confirmation), and puts the mail of an account with an open
exposure ahead of any campaign. Support can file a change for someone who lost their old
mailbox, which waits for a second person's approval. Modules: ``request`` (ask, read,
cancel, resend), ``links`` (confirm, revert), ``assisted`` (support's queue), ``holds``
(what a revert leaves), ``tokens``, ``mail``, ``views``, ``errors``, ``policy``.
"""
