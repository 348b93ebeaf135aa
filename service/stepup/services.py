"""Step-up verification: TOTP, emailed codes and recovery codes, with a bounded guess budget.

Every verification first *reserves* one failure with the subject's throttle
(``service.stepup.throttle``): per method, so that an attacker hammering one method does
not lock the owner out of another, and across methods up to a ceiling only support lifts.
Verifications of one subject run one after another, so 50 parallel wrong codes meet the
limits exactly, and of 20 parallel posts of one right code exactly one wins. An unknown
account is throttled and answered exactly like a known one.

A factor change needs the factors it replaces (ASVS 6.4.3, NIST SP 800-63B 6.1.2):
adding, replacing or removing an authenticator, or replacing recovery codes, while the
account has any factor needs an assurance token from TOTP or a recovery code; a first
factor on an account whose address leaked needs an assurance token at all (from the emailed
code, the factor the account already had), and confirming it is no step-up. An enrolment
not yet confirmed is dropped when the account is flagged or its address changes. Every such
change, a lock and an address change raise the account's security epoch, voiding earlier
tokens.

Secrets at rest: TOTP secrets encrypted (secret_box.py); recovery codes as argon2id
hashes; emailed codes not at all: a code is an HMAC of its challenge's id under a key the
database never sees, so the worker that mails it and the verifier derive it alike.
"""

from __future__ import annotations

import unicodedata
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum

from pyotp.utils import strings_equal
from sqlalchemy import BigInteger, Exists, delete, exists, insert, literal, select, update
from sqlalchemy.orm import InstrumentedAttribute, Session
from sqlalchemy.sql.elements import ColumnElement

from service.addresses import mask_email
from service.audit import record_event
from service.db import UTCDateTime, bulk, rowcount
from service.errors import LeakguardError, NotFound
from service.events.emit import record_step_up_locked, record_step_up_unlocked
from service.models import (
    Account,
    ChallengeState,
    Exposure,
    ExposureKind,
    ExposureState,
    Notice,
    NoticeKind,
    NoticeState,
    RecoveryCode,
    StepUpChallenge,
    TotpCredential,
)
from service.stepup import devices, hold, recovery_codes, throttle, totp
from service.stepup.assurance import Assurance, AssuranceSigner, AssuranceTokenInvalid
from service.stepup.secret_box import SecretBox, SecretUnreadable, keyed_digest
from service.stepup.throttle import Locked, Reservation, ThrottlePolicy
from service.stepup.totp import TotpEnrollment
from service.stepup.typed import typed_code

EMAIL_CODE_DIGITS = 6
MAX_CODE_CHARS = 64
MAX_LABEL_CHARS = 100
SUBJECT_BYTES = 16


class CodeCheck(StrEnum):
    """What one code turned out to be."""

    RIGHT = "right"
    WRONG = "wrong"
    REPLAYED = "replayed"  # right, and accepted already


class Method(StrEnum):
    TOTP = "totp"
    EMAIL_CODE = "email_code"
    RECOVERY_CODE = "recovery_code"


# The factors a person holds apart from their mailbox: only they may replace a factor.
POSSESSION_METHODS = frozenset({Method.TOTP, Method.RECOVERY_CODE})


class VerificationFailed(LeakguardError):
    """A wrong, used, expired or unknown code; the same answer for an unknown account."""

    status = 403
    code = "verification_failed"
    title = "The code is not valid"


class StepUpLocked(LeakguardError):
    """The method is locked for a while (``Retry-After``), or, without an end, until support."""

    status = 403
    code = "locked"
    title = "Too many failed verifications: this method is locked for this account"

    def __init__(self, locked_until: datetime | None, now: datetime) -> None:
        if locked_until is None:
            super().__init__("step-up is blocked for this account until support unlocks it")
            self.retry_after: int | None = None
        else:
            super().__init__(f"locked until {locked_until.isoformat()}")
            self.retry_after = max(1, int((locked_until - now).total_seconds() + 0.999))

    def response_headers(self) -> dict[str, str]:
        return {} if self.retry_after is None else {"Retry-After": str(self.retry_after)}


class AssuranceRequired(LeakguardError):
    status = 403
    code = "assurance_required"
    title = "This change needs a passed step-up: send its assurance token"


class AssuranceTooWeak(LeakguardError):
    status = 403
    code = "assurance_too_weak"
    title = "Replacing a factor needs a step-up with TOTP or a recovery code"


@dataclass(frozen=True, slots=True)
class StepUpPolicy:
    code_ttl: timedelta = timedelta(minutes=10)
    code_attempts: int = 5
    totp_issuer: str = "Leakguard"
    throttle: ThrottlePolicy = field(default_factory=ThrottlePolicy)
    # How long a passed step-up trusts the device it was passed on (0: no trust).
    trusted_device_ttl: timedelta = timedelta(days=30)


@dataclass(frozen=True, slots=True)
class Challenge:
    id: str
    method: Method
    expires_at: datetime
    notice_id: int | None  # None when nothing is sent (unknown account, method closed)


@dataclass(frozen=True, slots=True)
class Passed:
    method: Method
    token: str
    expires_at: datetime
    device_trusted_until: datetime | None = None  # when a named device's trust ends


@dataclass(frozen=True, slots=True)
class Enrolled:
    """A confirmed authenticator. Not a passed step-up: no assurance token comes with it."""

    method: Method


@dataclass(frozen=True, slots=True)
class Refused:
    locked: Locked | None  # set when this failure, or an earlier one, locked the method
    replayed: bool = False  # the code was accepted already; not counted as a failure

    def error(self, now: datetime) -> LeakguardError:
        if self.locked is not None:
            return StepUpLocked(self.locked.until, now)
        # A replay gets a wrong code's answer (STYLE: a wrong, expired or reused code is
        # one refusal; the audit row says which). Only the guess budget tells them apart.
        return VerificationFailed()


Outcome = Passed | Refused


@dataclass(frozen=True, slots=True)
class _Account:
    id: int
    email: str
    epoch: int


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
        self._subject_key = keyed_digest(master_key, b"step-up-subject")
        self._device_key = keyed_digest(master_key, b"trusted-device")

    def device_key(self, account_id: int, device_id: str) -> bytes:
        """The stored keyed digest of the login service's device id for the account."""
        return devices.device_key(self._device_key, account_id, device_id)

    def subject(self, external_id: str) -> bytes:
        """The throttle's key of an external id, known account or not (a keyed digest)."""
        digest = keyed_digest(self._subject_key, external_id.encode("utf-8", "surrogatepass"))
        return digest[:SUBJECT_BYTES]

    # TOTP -------------------------------------------------------------------------------

    def enroll_totp(
        self,
        session: Session,
        external_id: str,
        *,
        assurance_token: str | None,
        label: str | None = None,
        actor: str,
        now: datetime,
    ) -> TotpEnrollment:
        """Start (or restart) an enrolment; a confirmed credential stays in force until the
        new one is confirmed.

        The authenticator shows ``label`` (a name the login service chose, without control
        or format characters) or the masked address, never our ids. Raises NotFound,
        AssuranceRequired, AssuranceTooWeak or AssuranceTokenInvalid (see the module's
        rules for a factor change).
        """
        account = _account(session, external_id)
        # Adding an authenticator beside recovery codes, like replacing one, is a change to
        # an account that has a factor: only its holder may make it.
        has_factor = session.execute(
            select(totp_enrolled(account.id), recovery_codes_left(account.id))
        ).one()
        self._authorize_change(session, account, external_id, assurance_token, any(has_factor), now)
        credential = session.get(TotpCredential, account.id)
        secret = totp.new_secret()
        sealed = self._totp_box.seal(secret.encode(), _context(account.id))
        if credential is None:
            session.add(
                TotpCredential(account_id=account.id, pending_secret=sealed, created_at=now)
            )
        else:
            credential.pending_secret = sealed
        _audit(session, actor, "step_up.totp_enrollment_started", account.email, external_id, now)
        shown = "".join(
            c for c in label or "" if unicodedata.category(c)[0] not in "CZ" or c == " "
        )
        name = shown.strip()[:MAX_LABEL_CHARS] or mask_email(account.email)
        return totp.enrollment(secret, name=name, issuer=self.policy.totp_issuer)

    def confirm_totp(
        self, session: Session, external_id: str, code: str, *, actor: str, now: datetime
    ) -> Enrolled | Refused:
        """Confirm the pending enrolment with its first code. Not a step-up: a factor that
        was just added proves nothing about who added it. A wrong code counts as a failure."""
        attempt = self._reserve(session, external_id, Method.TOTP, now=now)
        if isinstance(attempt, Refused):
            return attempt
        reservation, account = attempt
        credential = session.get(TotpCredential, account.id) if account else None
        counter = None
        if account and credential is not None and credential.pending_secret is not None:
            counter = self._totp_counter(account.id, credential.pending_secret, code, now)
        elif account and credential is not None and credential.secret is not None:
            # Confirmed already: the confirming request sent twice is a replay, not a guess.
            used = self._totp_counter(account.id, credential.secret, code, now)
            last = credential.last_counter
            if used is not None and last is not None and used <= last:
                return self._replayed(
                    session, reservation, account, Method.TOTP, external_id, actor, now
                )
        if account is None or credential is None or counter is None:
            return self._fail(session, reservation, account, Method.TOTP, external_id, actor, now)
        credential.secret = credential.pending_secret
        credential.pending_secret = None
        credential.last_counter = counter
        credential.confirmed_at = now
        throttle.succeed(session, reservation)
        _raise_epoch(session, account.id)
        _audit(session, actor, "step_up.totp_enrolled", account.email, external_id, now)
        return Enrolled(Method.TOTP)

    def remove_totp(
        self,
        session: Session,
        external_id: str,
        *,
        assurance_token: str | None,
        actor: str,
        now: datetime,
    ) -> None:
        """Remove the authenticator; a confirmed one only with an assurance token from TOTP
        or a recovery code. Raises NotFound and the errors of a factor change."""
        account = _account(session, external_id)
        credential = session.get(TotpCredential, account.id)
        if credential is None:
            return
        if credential.secret is not None:
            self._authorize_change(session, account, external_id, assurance_token, True, now)
            _raise_epoch(session, account.id)
        session.execute(delete(TotpCredential).where(TotpCredential.account_id == account.id))
        _audit(session, actor, "step_up.totp_removed", account.email, external_id, now)

    def _totp_counter(self, account_id: int, sealed: bytes, code: str, now: datetime) -> int | None:
        try:
            secret = self._totp_box.open(sealed, _context(account_id)).decode()
        except SecretUnreadable:
            return None
        return totp.step_of(secret, code, now)

    def _verify_totp(
        self, session: Session, account_id: int, code: str, now: datetime
    ) -> CodeCheck:
        credential = session.get(TotpCredential, account_id)
        if credential is None or credential.secret is None:
            return CodeCheck.WRONG
        counter = self._totp_counter(account_id, credential.secret, code, now)
        if counter is None:
            return CodeCheck.WRONG
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
        # A code of the step accepted last, or of one before it, was valid: a replay (a
        # double submit), which RFC 6238 refuses but which is no guess.
        return CodeCheck.RIGHT if rowcount(claimed) == 1 else CodeCheck.REPLAYED

    # Emailed codes ----------------------------------------------------------------------

    def start_email_challenge(
        self, session: Session, external_id: str, *, actor: str, now: datetime
    ) -> Challenge:
        """Create a challenge and its one-recipient notice; void the account's earlier ones.

        The answer has the same shape, and the work the same cost, whatever happens; nothing
        is sent to an unknown account, one whose emailed code is locked or whose send budget
        (``ThrottlePolicy.email_sends`` per window) is spent, or one whose mailbox cannot be
        trusted (undeliverable, or its password leaked with it).
        """
        challenge_id = str(uuid.uuid4())
        expires_at = now + self.policy.code_ttl
        account = session.execute(
            select(
                Account.id, Account.email, Account.created_at, mailbox_usable().label("usable")
            ).where(Account.external_id == external_id)
        ).first()
        subject = self.subject(external_id)
        since = None if account is None else account.created_at
        state = throttle.state(session, subject, now=now, since=since)
        closed = state.blocked or state.locked_until(Method.EMAIL_CODE.value) is not None
        if not closed:  # for every id alike, known or not: the same work, the same budget
            spent = throttle.spend_email_send(
                session, subject, self.policy.throttle, now=now, since=since
            )
            closed = spent is not None
        sending = account is not None and not closed and bool(account.usable)
        account_id = account.id if account is not None and sending else None
        # The same statements whatever the case, so the time tells nothing either; only a
        # challenge that will be mailed gets an account and a notice.
        self._void_challenges(session, account_id)
        session.execute(
            insert(StepUpChallenge).values(
                id=challenge_id,
                account_id=account_id,
                method=Method.EMAIL_CODE.value,
                state=ChallengeState.PENDING,
                attempts=0,
                created_at=now,
                expires_at=expires_at,
            )
        )
        # The notice: a row when the code is mailed; otherwise the same insert, of no row.
        values = select(
            literal(account_id or 0, BigInteger()).label("account_id"),
            literal(NoticeKind.STEP_UP_CODE.value).label("kind"),
            literal(NoticeState.PENDING.value).label("state"),
            literal(0).label("attempts"),
            literal(challenge_id).label("challenge_id"),
            literal(now, UTCDateTime()).label("created_at"),
        ).where(literal(sending))
        notice_id = session.scalar(
            insert(Notice)
            .from_select(
                ["account_id", "kind", "state", "attempts", "challenge_id", "created_at"], values
            )
            .returning(Notice.id)
        )
        action = "step_up.email_code_sent" if sending else "step_up.email_code_withheld"
        _audit(session, actor, action, account.email if account else "", external_id, now)
        return Challenge(challenge_id, Method.EMAIL_CODE, expires_at, notice_id=notice_id)

    def _void_challenges(self, session: Session, account_id: int | None) -> None:
        """A new challenge voids the account's earlier ones (None: an account that is not)."""
        session.execute(
            update(StepUpChallenge)
            .where(
                StepUpChallenge.account_id == (account_id if account_id is not None else -1),
                StepUpChallenge.state == ChallengeState.PENDING,
            )
            .values(state=ChallengeState.VOID)
            .execution_options(synchronize_session=False)
        )

    def email_code(self, challenge_id: str) -> str:
        """The code of a challenge: what the mail carries and what verification expects."""
        digest = keyed_digest(self._code_key, challenge_id.encode())
        return str(int.from_bytes(digest[:8], "big") % 10**EMAIL_CODE_DIGITS).zfill(
            EMAIL_CODE_DIGITS
        )

    def _verify_email_code(
        self, session: Session, account_id: int, challenge_id: str | None, code: str, now: datetime
    ) -> CodeCheck:
        if not challenge_id:
            return CodeCheck.WRONG
        right = strings_equal(typed_code(code), self.email_code(challenge_id))
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
            # The challenge's own code once more after it passed: a replay, not a guess.
            passed = session.scalar(
                select(
                    exists().where(
                        StepUpChallenge.id == challenge_id,
                        StepUpChallenge.account_id == account_id,
                        StepUpChallenge.state == ChallengeState.PASSED,
                    )
                )
            )
            return CodeCheck.REPLAYED if right and passed else CodeCheck.WRONG
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
        return CodeCheck.RIGHT if right else CodeCheck.WRONG

    # Recovery codes ---------------------------------------------------------------------

    def new_recovery_codes(
        self,
        session: Session,
        external_id: str,
        *,
        assurance_token: str | None,
        actor: str,
        now: datetime,
    ) -> list[str]:
        """Replace the account's recovery codes with ten new ones, returned this once.

        While the account has any factor, only with an assurance token from TOTP or a
        recovery code. Raises NotFound and the errors of a factor change.
        """
        account = _account(session, external_id)
        has_factor = session.execute(
            select(totp_enrolled(account.id), recovery_codes_left(account.id))
        ).one()
        self._authorize_change(session, account, external_id, assurance_token, any(has_factor), now)
        session.execute(delete(RecoveryCode).where(RecoveryCode.account_id == account.id))
        codes = [recovery_codes.new_code() for _ in range(recovery_codes.CODES_PER_SET)]
        session.add_all(
            RecoveryCode(
                account_id=account.id, lookup=code.lookup, code_hash=code.code_hash, created_at=now
            )
            for code in codes
        )
        _raise_epoch(session, account.id)
        _audit(session, actor, "step_up.recovery_codes_generated", account.email, external_id, now)
        return [code.shown for code in codes]

    def _verify_recovery_code(
        self, session: Session, account_id: int, code: str, now: datetime
    ) -> CodeCheck:
        normalized = recovery_codes.normalize_code(code)
        if normalized is None:
            return CodeCheck.WRONG
        # Used codes too: one of them sent again is a replay, not a guess.
        candidates = session.execute(
            select(RecoveryCode.id, RecoveryCode.code_hash, RecoveryCode.used_at).where(
                RecoveryCode.account_id == account_id,
                RecoveryCode.lookup == normalized[: recovery_codes.LOOKUP_CHARS],
            )
        ).all()
        for row in candidates:
            if not recovery_codes.matches(row.code_hash, normalized):
                continue
            if row.used_at is not None:
                return CodeCheck.REPLAYED
            used = session.execute(
                update(RecoveryCode)
                .where(RecoveryCode.id == row.id, RecoveryCode.used_at.is_(None))
                .values(used_at=now)
                .execution_options(synchronize_session=False)
            )
            return CodeCheck.RIGHT if rowcount(used) == 1 else CodeCheck.REPLAYED
        return CodeCheck.WRONG

    # Verification and lockout -----------------------------------------------------------

    def verify(
        self,
        session: Session,
        external_id: str,
        method: Method,
        code: str,
        *,
        challenge_id: str | None = None,
        device_id: str | None = None,
        actor: str,
        now: datetime,
    ) -> Outcome:
        """Check one code. The caller commits whatever the outcome: failures must count.

        A pass with ``device_id`` (the login service's opaque id of the device) trusts
        that device for the account for ``policy.trusted_device_ttl``.
        """
        attempt = self._reserve(session, external_id, method, now=now)
        if isinstance(attempt, Refused):
            return attempt
        reservation, account = attempt
        code = code[:MAX_CODE_CHARS]
        check = CodeCheck.WRONG
        if account is not None:
            if method is Method.TOTP:
                check = self._verify_totp(session, account.id, code, now)
            elif method is Method.EMAIL_CODE:
                check = self._verify_email_code(session, account.id, challenge_id, code, now)
            else:
                check = self._verify_recovery_code(session, account.id, code, now)
        if account is None or check is CodeCheck.WRONG:
            return self._fail(session, reservation, account, method, external_id, actor, now)
        if check is CodeCheck.REPLAYED:
            return self._replayed(session, reservation, account, method, external_id, actor, now)
        throttle.succeed(session, reservation)
        _audit(session, actor, "step_up.passed", account.email, external_id, now, method=method)
        # Support's hold asked for exactly this: the person proved it is them again.
        if hold.release_hold(
            session, account.id, by=actor, reason=f"passed a step-up ({method.value})", now=now
        ):
            _audit(session, actor, "step_up.hold_ended", account.email, external_id, now)
        trusted_until = None
        if device_id is not None and self.policy.trusted_device_ttl > timedelta(0):
            trusted_until = devices.trust_device(
                session,
                account.id,
                self.device_key(account.id, device_id),
                ttl=self.policy.trusted_device_ttl,
                now=now,
            )
        token = self.signer.issue(
            external_id=external_id,
            account_id=account.id,
            method=method.value,
            epoch=account.epoch,
            now=now,
        )
        return Passed(
            method=method,
            token=token,
            expires_at=self.signer.expires_at(now),
            device_trusted_until=trusted_until,
        )

    def check_assurance(
        self, session: Session, external_id: str, token: str, *, now: datetime
    ) -> Assurance:
        """The token's claims if it speaks for the account as it is now; raise
        AssuranceTokenInvalid (or AssuranceTokenExpired) otherwise."""
        assurance = self.signer.verify(token, external_id=external_id, now=now)
        row = session.execute(
            select(Account.id, Account.security_epoch).where(Account.external_id == external_id)
        ).first()
        if row is None or not assurance.holds_for(account_id=row.id, epoch=row.security_epoch):
            raise AssuranceTokenInvalid()
        return assurance

    def unlock(self, session: Session, external_id: str, *, actor: str, now: datetime) -> bool:
        """Support's override: end every lock and block, forget the failures. Raises NotFound.

        Support names the account on purpose, so the error names it too.
        """
        account = session.scalars(select(Account).where(Account.external_id == external_id)).first()
        if account is None:
            raise NotFound(f"no account with the id {external_id!r}")
        was_locked = throttle.clear(session, self.subject(external_id))
        record_step_up_unlocked(session, account.id, now=now)
        _audit(session, actor, "step_up.unlocked", account.email, external_id, now)
        return was_locked

    def _authorize_change(
        self,
        session: Session,
        account: Account,
        external_id: str,
        token: str | None,
        replaces_factor: bool,
        now: datetime,
    ) -> None:
        """Enforce the rules of a factor change (module docstring); raise if they fail."""
        if not replaces_factor and not session.scalar(select(open_exposure(account.id))):
            return  # a first factor on an account no leak names
        if token is None:
            raise AssuranceRequired()
        assurance = self.signer.verify(token, external_id=external_id, now=now)
        if not assurance.holds_for(account_id=account.id, epoch=account.security_epoch):
            raise AssuranceTokenInvalid()
        if replaces_factor and assurance.method not in POSSESSION_METHODS:
            raise AssuranceTooWeak()

    def _reserve(
        self, session: Session, external_id: str, method: Method, *, now: datetime
    ) -> tuple[Reservation, _Account | None] | Refused:
        row = session.execute(
            select(Account.id, Account.email, Account.security_epoch, Account.created_at).where(
                Account.external_id == external_id
            )
        ).first()
        reserved = throttle.reserve(
            session,
            self.subject(external_id),
            method.value,
            self.policy.throttle,
            now=now,
            since=None if row is None else row.created_at,
        )
        if isinstance(reserved, Locked):
            return Refused(reserved)
        account = None if row is None else _Account(row.id, row.email, row.security_epoch)
        return reserved, account

    def _replayed(
        self,
        session: Session,
        reservation: Reservation,
        account: _Account,
        method: Method,
        external_id: str,
        actor: str,
        now: datetime,
    ) -> Refused:
        """Refuse a code accepted already without counting it: the failure reserved for
        this attempt is given back, the earlier ones stay."""
        throttle.release(session, reservation)
        _audit(session, actor, "step_up.replayed", account.email, external_id, now, method=method)
        return Refused(None, replayed=True)

    def _fail(
        self,
        session: Session,
        reservation: Reservation,
        account: _Account | None,
        method: Method,
        external_id: str,
        actor: str,
        now: datetime,
    ) -> Refused:
        email = account.email if account else ""
        _audit(session, actor, "step_up.failed", email, external_id, now, method=method)
        locked = throttle.fail(session, reservation, self.policy.throttle, now=now)
        if locked is None:
            return Refused(None)
        if account is not None:
            _raise_epoch(session, account.id)  # a lock ends what earlier tokens vouched for
            record_step_up_locked(session, account.id, until=locked.until, now=now)
        action = "step_up.blocked" if locked.until is None else "step_up.locked"
        until = locked.until.isoformat() if locked.until else None
        _audit(session, actor, action, email, external_id, now, method=method, until=until)
        return Refused(locked)


def totp_enrolled(account_id: ColumnElement[int] | int) -> Exists:
    """True where the account has a confirmed authenticator (a subquery on ``account_id``)."""
    return exists().where(
        TotpCredential.account_id == account_id, TotpCredential.secret.is_not(None)
    )


def recovery_codes_left(account_id: ColumnElement[int] | int) -> Exists:
    """True where the account has an unused recovery code (a subquery on ``account_id``)."""
    return exists().where(RecoveryCode.account_id == account_id, RecoveryCode.used_at.is_(None))


def open_exposure(account_id: ColumnElement[int] | int) -> Exists:
    """True where a leak names the account's address and the exposure is open."""
    return exists().where(Exposure.account_id == account_id, Exposure.state == ExposureState.OPEN)


def mailbox_undeliverable(email_key: ColumnElement[bytes] | InstrumentedAttribute[bytes]) -> Exists:
    """True where a bounce marked the mailbox undeliverable, on this account or on any other
    account with the same canonical address: the mark belongs to the mailbox."""
    same_mailbox = Account.__table__.alias("same_mailbox")
    return exists().where(
        same_mailbox.c.email_key == email_key, same_mailbox.c.undeliverable_at.is_not(None)
    )


def mailbox_usable() -> ColumnElement[bool]:
    """True for an account (in a query over ``account``) whose mailbox a code may go to:
    the mailbox is deliverable, and no open leak gave out its password with the address."""
    credential_leaked = exists().where(
        Exposure.account_id == Account.id,
        Exposure.state == ExposureState.OPEN,
        Exposure.kind == ExposureKind.CREDENTIAL,
    )
    return ~mailbox_undeliverable(Account.email_key) & ~credential_leaked


def available_methods(
    *, totp_enrolled: bool, codes_left: bool, mailbox_usable: bool
) -> list[Method]:
    """The methods the account can use, in the order a login service offers them."""
    methods = [Method.TOTP] if totp_enrolled else []
    if mailbox_usable:
        methods.append(Method.EMAIL_CODE)
    if codes_left:
        methods.append(Method.RECOVERY_CODE)
    return methods


def drop_pending_enrolments(session: Session, account_ids: Sequence[int]) -> None:
    """Forget enrolments not yet confirmed: the account was just flagged or re-addressed, and
    an enrolment started before that must not become a factor after it. Does not commit."""
    for condition in bulk.in_batches(session, TotpCredential.account_id, account_ids):
        session.execute(
            update(TotpCredential)
            .where(condition, TotpCredential.pending_secret.is_not(None))
            .values(pending_secret=None)
            .execution_options(synchronize_session=False)
        )


def _raise_epoch(session: Session, account_id: int) -> None:
    session.execute(
        update(Account)
        .where(Account.id == account_id)
        .values(security_epoch=Account.security_epoch + 1)
        .execution_options(synchronize_session=False)
    )


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
    detail: dict[str, str] = {"email": mask_email(email)} if email else {}
    if method is not None:
        detail["method"] = method.value
    if until is not None:
        detail["until"] = until
    record_event(
        session, actor=actor, action=action, target=f"account:{external_id}", detail=detail, now=now
    )
