"""What the email-change steps need from the running service, in one value."""

from __future__ import annotations

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

    @classmethod
    def of(cls, runtime: Runtime) -> ChangeTools:
        settings = runtime.settings
        return cls(
            keys=runtime.keys,
            signer=runtime.step_up.signer,
            tokens=LinkTokens(settings.hash_key_bytes()),
            policy=ChangePolicy(cooldown=timedelta(hours=settings.email_change_cooldown_hours)),
        )
