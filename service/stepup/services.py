"""Step-up verification: TOTP, emailed codes and recovery codes, with a bounded guess budget.

Every verification first *reserves* one failure on the account with a single conditional
UPDATE (``failed_verifications < limit`` and not locked). On PostgreSQL that row stays
locked until commit and SQLite has one writer at a time, so concurrent verifications of
one account run one after another: 50 parallel wrong codes meet the limits exactly, and
of 20 parallel posts of one right code exactly one wins. A success gives the reservation
back (the counter restarts at 0); the tenth failure locks step-up for 15 minutes, twice as
long on each lock in a row (NIST SP 800-63B allows at most 100 consecutive failures).

Secrets at rest: TOTP secrets encrypted (service/secret_box.py); recovery codes as argon2id
hashes; emailed codes not at all: a code is an HMAC of its challenge's id under a key the
database never sees, so the worker that mails it and the verifier derive it alike.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from pyotp.utils import strings_equal
from sqlalchemy import Exists, delete, exists, select, update
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from service.addresses import mask_email
from service.audit import record_event
from service.db import rowcount
from service.errors import LeakguardError, NotFound
from service.models import (
    Account,
    ChallengeState,
    Notice,
    NoticeKind,
    NoticeState,
    RecoveryCode,
    StepUpChallenge,
    TotpCredential,
)
from service.stepup import recovery_codes, totp
from service.stepup.assurance import AssuranceSigner
from service.stepup.secret_box import SecretBox, SecretUnreadable, keyed_digest
from service.stepup.totp import TotpEnrollment

EMAIL_CODE_DIGITS = 6
MAX_CODE_CHARS = 64
MAX_LOCK = timedelta(days=1)


class Method(StrEnum):
    TOTP = "totp"
    EMAIL_CODE = "email_code"
    RECOVERY_CODE = "recovery_code"


class VerificationFailed(LeakguardError):
    """A wrong, used, expired or unknown code; the same answer for an unknown account."""

    status = 403
    code = "verification_failed"
    title = "The code is not valid"


class StepUpLocked(LeakguardError):
    status = 403
    code = "locked"
    title = "Too many failed verifications: step-up is locked for this account"

    def __init__(self, locked_until: datetime, now: datetime) -> None:
        super().__init__(f"locked until {locked_until.isoformat()}")
        self.locked_until = locked_until
        self.retry_after = max(1, int((locked_until - now).total_seconds() + 0.999))

    def response_headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after)}


@dataclass(frozen=True, slots=True)
class StepUpPolicy:
    code_ttl: timedelta = timedelta(minutes=10)
    code_attempts: int = 5
    max_failures: int = 10
    lock_base: timedelta = timedelta(minutes=15)
    totp_issuer: str = "Leakguard"


@dataclass(frozen=True, slots=True)
class Challenge:
    id: str
    method: Method
    expires_at: datetime
    notice_id: int | None  # None when nothing is sent (unknown or locked account)


@dataclass(frozen=True, slots=True)
class Passed:
    method: Method
    token: str
    expires_at: datetime


@dataclass(frozen=True, slots=True)
class Refused:
    locked_until: datetime | None  # set when this failure, or an earlier one, locked step-up

    def error(self, now: datetime) -> LeakguardError:
        if self.locked_until is not None:
            return StepUpLocked(self.locked_until, now)
        return VerificationFailed()


Outcome = Passed | Refused


@dataclass(frozen=True, slots=True)
class _Attempt:
    """One reserved failure on an account, given back if the code proves right."""

    account_id: int
    email: str
    failures: int
    lock_count: int


class StepUp:
    """The step-up rules of one deployment. Methods take the caller's session and clock."""

    def __init__(
        self,
        *,
        master_key: bytes,
        signer: AssuranceSigner,
        policy: StepUpPolicy | None = None,
    ) -> None:
        self.policy = policy or StepUpPolicy()
        self.signer = signer
        self._totp_box = SecretBox(master_key, "totp-secret")
        self._code_key = keyed_digest(master_key, b"email-code")

    # TOTP -------------------------------------------------------------------------------

    def enroll_totp(
        self, session: Session, external_id: str, *, actor: str, now: datetime
    ) -> TotpEnrollment:
        """Start (or restart) an enrolment; a confirmed credential stays in force until the
        new one is confirmed. Raises NotFound."""
        account = _account(session, external_id)
        secret = totp.new_secret()
        sealed = self._totp_box.seal(secret.encode(), _context(account.id))
        credential = session.get(TotpCredential, account.id)
        if credential is None:
            session.add(
                TotpCredential(account_id=account.id, pending_secret=sealed, created_at=now)
            )
        else:
            credential.pending_secret = sealed
        _audit(session, actor, "step_up.totp_enrollment_started", account.email, external_id, now)
        return totp.enrollment(secret, name=external_id, issuer=self.policy.totp_issuer)

    def confirm_totp(
        self, session: Session, external_id: str, code: str, *, actor: str, now: datetime
    ) -> Outcome:
        """Confirm the pending enrolment with its first code; it counts as a TOTP step-up."""
        attempt = self._reserve(session, external_id, now=now)
        if isinstance(attempt, Refused):
            return attempt
        credential = session.get(TotpCredential, attempt.account_id)
        counter = None
        if credential is not None and credential.pending_secret is not None:
            counter = self._totp_counter(attempt.account_id, credential.pending_secret, code, now)
        if counter is None or credential is None:
            return self._fail(session, attempt, Method.TOTP, external_id, actor=actor, now=now)
        credential.secret = credential.pending_secret
        credential.pending_secret = None
        credential.last_counter = counter
        credential.confirmed_at = now
        _audit(session, actor, "step_up.totp_enrolled", attempt.email, external_id, now)
        return self._pass(session, attempt, Method.TOTP, external_id, actor=actor, now=now)

    def remove_totp(self, session: Session, external_id: str, *, actor: str, now: datetime) -> None:
        account = _account(session, external_id)
        session.execute(delete(TotpCredential).where(TotpCredential.account_id == account.id))
        _audit(session, actor, "step_up.totp_removed", account.email, external_id, now)

    def _totp_counter(self, account_id: int, sealed: bytes, code: str, now: datetime) -> int | None:
        try:
            secret = self._totp_box.open(sealed, _context(account_id)).decode()
        except SecretUnreadable:
            return None
        return totp.step_of(secret, code, now)

    def _verify_totp(self, session: Session, account_id: int, code: str, now: datetime) -> bool:
        credential = session.get(TotpCredential, account_id)
        if credential is None or credential.secret is None:
            return False
        counter = self._totp_counter(account_id, credential.secret, code, now)
        if counter is None:
            return False
        # The replay guard: a step at or below the last accepted one was used already.
        claimed = session.execute(
            update(TotpCredential)
            .where(
                TotpCredential.account_id == account_id,
                (TotpCredential.last_counter.is_(None)) | (TotpCredential.last_counter < counter),
            )
            .values(last_counter=counter)
            .execution_options(synchronize_session=False)
        )
        return rowcount(claimed) == 1

    # Emailed codes ----------------------------------------------------------------------

    def start_email_challenge(
        self, session: Session, external_id: str, *, actor: str, now: datetime
    ) -> Challenge:
        """Create a challenge and its one-recipient notice; void the account's earlier ones.

        An unknown or locked account gets an answer of the same shape, and nothing is sent.
        """
        challenge_id = str(uuid.uuid4())
        expires_at = now + self.policy.code_ttl
        account = session.execute(
            select(Account.id, Account.email, Account.locked_until).where(
                Account.external_id == external_id
            )
        ).first()
        if account is None or (account.locked_until is not None and account.locked_until > now):
            return Challenge(challenge_id, Method.EMAIL_CODE, expires_at, notice_id=None)
        session.execute(
            update(StepUpChallenge)
            .where(
                StepUpChallenge.account_id == account.id,
                StepUpChallenge.state == ChallengeState.PENDING,
            )
            .values(state=ChallengeState.VOID)
            .execution_options(synchronize_session=False)
        )
        session.add(
            StepUpChallenge(
                id=challenge_id,
                account_id=account.id,
                method=Method.EMAIL_CODE.value,
                state=ChallengeState.PENDING,
                attempts=0,
                created_at=now,
                expires_at=expires_at,
            )
        )
        session.flush()
        notice = Notice(
            account_id=account.id,
            kind=NoticeKind.STEP_UP_CODE,
            state=NoticeState.PENDING,
            attempts=0,
            challenge_id=challenge_id,
            created_at=now,
        )
        session.add(notice)
        session.flush()
        _audit(session, actor, "step_up.email_code_sent", account.email, external_id, now)
        return Challenge(challenge_id, Method.EMAIL_CODE, expires_at, notice_id=notice.id)

    def email_code(self, challenge_id: str) -> str:
        """The code of a challenge: what the mail carries and what verification expects."""
        digest = keyed_digest(self._code_key, challenge_id.encode())
        return str(int.from_bytes(digest[:8], "big") % 10**EMAIL_CODE_DIGITS).zfill(
            EMAIL_CODE_DIGITS
        )

    def _verify_email_code(
        self, session: Session, account_id: int, challenge_id: str | None, code: str, now: datetime
    ) -> bool:
        if not challenge_id:
            return False
        # Spend one of the challenge's tries first, so that it is counted whatever happens.
        spent = session.execute(
            update(StepUpChallenge)
            .where(
                StepUpChallenge.id == challenge_id,
                StepUpChallenge.account_id == account_id,
                StepUpChallenge.state == ChallengeState.PENDING,
                StepUpChallenge.attempts < self.policy.code_attempts,
                StepUpChallenge.expires_at > now,
            )
            .values(attempts=StepUpChallenge.attempts + 1)
            .returning(StepUpChallenge.attempts)
            .execution_options(synchronize_session=False)
        ).scalar_one_or_none()
        if spent is None:
            return False
        right = strings_equal(code.strip(), self.email_code(challenge_id))
        if right or spent >= self.policy.code_attempts:
            session.execute(
                update(StepUpChallenge)
                .where(StepUpChallenge.id == challenge_id)
                .values(
                    state=ChallengeState.PASSED if right else ChallengeState.VOID,
                    used_at=now if right else None,
                )
                .execution_options(synchronize_session=False)
            )
        return right

    # Recovery codes ---------------------------------------------------------------------

    def new_recovery_codes(
        self, session: Session, external_id: str, *, actor: str, now: datetime
    ) -> list[str]:
        """Replace the account's recovery codes with ten new ones, returned this once."""
        account = _account(session, external_id)
        session.execute(delete(RecoveryCode).where(RecoveryCode.account_id == account.id))
        codes = [recovery_codes.new_code() for _ in range(recovery_codes.CODES_PER_SET)]
        session.add_all(
            RecoveryCode(
                account_id=account.id, lookup=code.lookup, code_hash=code.code_hash, created_at=now
            )
            for code in codes
        )
        _audit(session, actor, "step_up.recovery_codes_generated", account.email, external_id, now)
        return [code.shown for code in codes]

    def _verify_recovery_code(
        self, session: Session, account_id: int, code: str, now: datetime
    ) -> bool:
        normalized = recovery_codes.normalize_code(code)
        if normalized is None:
            return False
        candidates = session.execute(
            select(RecoveryCode.id, RecoveryCode.code_hash).where(
                RecoveryCode.account_id == account_id,
                RecoveryCode.lookup == normalized[: recovery_codes.LOOKUP_CHARS],
                RecoveryCode.used_at.is_(None),
            )
        ).all()
        for row in candidates:
            if not recovery_codes.matches(row.code_hash, normalized):
                continue
            used = session.execute(
                update(RecoveryCode)
                .where(RecoveryCode.id == row.id, RecoveryCode.used_at.is_(None))
                .values(used_at=now)
                .execution_options(synchronize_session=False)
            )
            return rowcount(used) == 1
        return False

    # Verification and lockout -----------------------------------------------------------

    def verify(
        self,
        session: Session,
        external_id: str,
        method: Method,
        code: str,
        *,
        challenge_id: str | None = None,
        actor: str,
        now: datetime,
    ) -> Outcome:
        """Check one code. The caller commits whatever the outcome: failures must count."""
        attempt = self._reserve(session, external_id, now=now)
        if isinstance(attempt, Refused):
            return attempt
        code = code[:MAX_CODE_CHARS]
        if method is Method.TOTP:
            right = self._verify_totp(session, attempt.account_id, code, now)
        elif method is Method.EMAIL_CODE:
            right = self._verify_email_code(session, attempt.account_id, challenge_id, code, now)
        else:
            right = self._verify_recovery_code(session, attempt.account_id, code, now)
        if not right:
            return self._fail(session, attempt, method, external_id, actor=actor, now=now)
        return self._pass(session, attempt, method, external_id, actor=actor, now=now)

    def unlock(self, session: Session, external_id: str, *, actor: str, now: datetime) -> bool:
        """Support's override: end the lock and forget the failures. Raises NotFound.

        Support names the account on purpose, so the error names it too.
        """
        account = session.scalars(select(Account).where(Account.external_id == external_id)).first()
        if account is None:
            raise NotFound(f"no account with the id {external_id!r}")
        was_locked = account.locked_until is not None and account.locked_until > now
        account.locked_until = None
        account.failed_verifications = 0
        account.lock_count = 0
        _audit(session, actor, "step_up.unlocked", account.email, external_id, now)
        return was_locked

    def _reserve(self, session: Session, external_id: str, *, now: datetime) -> _Attempt | Refused:
        row = session.execute(
            update(Account)
            .where(
                Account.external_id == external_id,
                Account.failed_verifications < self.policy.max_failures,
                Account.locked_until.is_(None) | (Account.locked_until <= now),
            )
            .values(failed_verifications=Account.failed_verifications + 1)
            .returning(Account.id, Account.email, Account.failed_verifications, Account.lock_count)
            .execution_options(synchronize_session=False)
        ).first()
        if row is not None:
            return _Attempt(row.id, row.email, row.failed_verifications, row.lock_count)
        locked_until = session.scalar(
            select(Account.locked_until).where(Account.external_id == external_id)
        )
        if locked_until is not None and locked_until > now:
            return Refused(locked_until)
        return Refused(None)  # unknown account: the same answer as a wrong code

    def _pass(
        self,
        session: Session,
        attempt: _Attempt,
        method: Method,
        external_id: str,
        *,
        actor: str,
        now: datetime,
    ) -> Passed:
        session.execute(
            update(Account)
            .where(Account.id == attempt.account_id)
            .values(failed_verifications=0, lock_count=0)
            .execution_options(synchronize_session=False)
        )
        _audit(session, actor, "step_up.passed", attempt.email, external_id, now, method=method)
        token = self.signer.issue(
            external_id=external_id, account_id=attempt.account_id, method=method.value, now=now
        )
        return Passed(method=method, token=token, expires_at=self.signer.expires_at(now))

    def _fail(
        self,
        session: Session,
        attempt: _Attempt,
        method: Method,
        external_id: str,
        *,
        actor: str,
        now: datetime,
    ) -> Refused:
        _audit(session, actor, "step_up.failed", attempt.email, external_id, now, method=method)
        if attempt.failures < self.policy.max_failures:
            return Refused(None)
        locked_until = now + min(self.policy.lock_base * 2**attempt.lock_count, MAX_LOCK)
        session.execute(
            update(Account)
            .where(Account.id == attempt.account_id)
            .values(
                failed_verifications=0,
                locked_until=locked_until,
                lock_count=attempt.lock_count + 1,
            )
            .execution_options(synchronize_session=False)
        )
        _audit(
            session,
            actor,
            "step_up.locked",
            attempt.email,
            external_id,
            now,
            until=locked_until.isoformat(),
        )
        return Refused(locked_until)


def totp_enrolled(account_id: ColumnElement[int]) -> Exists:
    """True where the account has a confirmed authenticator (a subquery on ``account_id``)."""
    return exists().where(
        TotpCredential.account_id == account_id, TotpCredential.secret.is_not(None)
    )


def recovery_codes_left(account_id: ColumnElement[int]) -> Exists:
    """True where the account has an unused recovery code (a subquery on ``account_id``)."""
    return exists().where(RecoveryCode.account_id == account_id, RecoveryCode.used_at.is_(None))


def available_methods(*, totp_enrolled: bool, codes_left: bool) -> list[Method]:
    """The methods, in the order a login service offers them; ``email_code`` always."""
    methods = [Method.TOTP] if totp_enrolled else []
    methods.append(Method.EMAIL_CODE)
    if codes_left:
        methods.append(Method.RECOVERY_CODE)
    return methods


def _account(session: Session, external_id: str) -> Account:
    account = session.scalars(select(Account).where(Account.external_id == external_id)).first()
    if account is None:
        raise NotFound("no such account")
    return account


def _context(account_id: int) -> bytes:
    return b"totp:" + str(account_id).encode()


def _audit(
    session: Session,
    actor: str,
    action: str,
    email: str,
    external_id: str,
    now: datetime,
    *,
    method: Method | None = None,
    until: str | None = None,
) -> None:
    detail: dict[str, str] = {"email": mask_email(email)}
    if method is not None:
        detail["method"] = method.value
    if until is not None:
        detail["until"] = until
    record_event(
        session, actor=actor, action=action, target=f"account:{external_id}", detail=detail, now=now
    )
