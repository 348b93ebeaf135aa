"""What the email-change steps need from the running service, in one value."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

from service.addresses import AddressKeys
from service.email_change.policy import ChangePolicy
from service.email_change.tokens import LinkTokens
from service.runtime import Runtime
from service.stepup.assurance import AssuranceSigner


@dataclass(frozen=True, slots=True)
class ChangeTools:
    keys: AddressKeys  # to validate, canonicalize and key addresses
    signer: AssuranceSigner  # to check the step-up's assurance token
    tokens: LinkTokens  # to derive the links' tokens
    policy: ChangePolicy
    # Raises when the caller's budget for this kind of request is spent (the API's limits
    # per account and per new address: a 429). A step calls it where its request is known
    # to count, past every refusal that does not: a request that cannot succeed at all
    # gets its own answer (404 no_pending_change, 403 step_up_required...), never a 429
    # of a budget it would not have used. Operators' and support's paths have no budget.
    admit: Callable[[], None]

    @classmethod
    def of(cls, runtime: Runtime, *, admit: Callable[[], None] | None = None) -> ChangeTools:
        settings = runtime.settings
        return cls(
            keys=runtime.keys,
            signer=runtime.step_up.signer,
            tokens=LinkTokens(settings.hash_key_bytes()),
            policy=ChangePolicy(cooldown=timedelta(hours=settings.email_change_cooldown_hours)),
            admit=admit or _unbudgeted,
        )


def _unbudgeted() -> None:
    """The budget of a path that has none: every request is admitted."""
