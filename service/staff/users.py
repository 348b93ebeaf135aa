"""Staff users: creation with a one-time enrolment link, enrolment (password + TOTP),
login (password + TOTP), disabling and TOTP reset.

No Flask. Functions take the session first and the time; none commits. The TOTP secret
is sealed with a key derived from ``LEAKGUARD_HASH_KEY`` and bound to the staff id
(``StaffSecrets``), as account factors are (service/stepup/secret_box.py); the code is
checked by service/stepup/totp.py, with the same replay guard (a time step works once).
"""

from __future__ import annotations

import base64
import hashlib
import logging
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from email_validator import EmailNotValidError, validate_email
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from service.addresses import mask_email
from service.audit import record_event
from service.errors import AlreadyExists, LeakguardError, NotFound, ValidationFailed
from service.models import StaffRole, StaffSession, StaffUser
from service.staff.passwords import check_password_policy, hash_password, password_matches
from service.stepup import totp
from service.stepup.secret_box import SecretBox, SecretUnreadable, derive_key, keyed_digest

logger = logging.getLogger(__name__)

ENROL_TTL = timedelta(hours=72)
ENROL_TOKEN_BYTES = 32
ENROL_PATH = "/staff/enrol/"


class EnrolmentInvalid(LeakguardError):
    status = 404
    code = "enrolment_invalid"
    title = "This enrolment link is not valid: it was used, replaced, or has expired"


class CodeRefused(ValidationFailed):
    code = "code_refused"
    title = "The code is not right"


class LoginFailure(StrEnum):
    """The precise cause of a refused login: for the log and the audit row, never shown."""

    UNKNOWN_EMAIL = "unknown_email"
    NOT_ENROLLED = "not_enrolled"
    DISABLED = "disabled"
    WRONG_PASSWORD = "wrong_password"  # noqa: S105  (a cause, not a password)
    WRONG_CODE = "wrong_code"
    # A right code whose time step was accepted already: someone replays a code they saw
    # (over a shoulder, in a proxy). Told apart in the log and trail only.
    REPLAYED_CODE = "replayed_code"


@dataclass(frozen=True, slots=True)
class Enrolment:
    """A one-time enrolment link's token, shown once (only its SHA-256 is kept)."""

    staff_id: int
    email: str
    role: StaffRole
    token: str
    expires_at: datetime

    def link(self, public_url: str) -> str:
        return f"{public_url.rstrip('/')}{ENROL_PATH}{self.token}"


@dataclass(frozen=True, slots=True)
class LoginResult:
    staff: StaffUser | None  # None: refused
    failure: LoginFailure | None = None


class StaffSecrets:
    """Seals and opens staff TOTP secrets, each bound to its staff id; derives the secret
    an enrolment link offers."""

    def __init__(self, master_key: bytes) -> None:
        self._box = SecretBox(master_key, "staff-totp")
        self._enrol_key = derive_key(master_key, "staff-enrol-totp")

    def enrolment_secret(self, staff_id: int, token_hash: str) -> str:
        """The TOTP secret (base32, 160 bits) the enrolment link with this token offers:
        derived, not stored, so that showing the page writes nothing (a GET is safe, RFC
        9110 section 9.2.1), a reload shows the same secret, and a new link (a reset)
        offers a new one. Only the key holder can derive it from the link's token."""
        digest = keyed_digest(self._enrol_key, str(staff_id).encode(), token_hash.encode())
        return base64.b32encode(digest[: totp.SECRET_BYTES]).decode()

    def seal(self, staff_id: int, secret: str) -> bytes:
        return self._box.seal(secret.encode(), _context(staff_id))

    def open(self, staff_id: int, sealed: bytes) -> str:
        return self._box.open(sealed, _context(staff_id)).decode()


def _context(staff_id: int) -> bytes:
    return f"staff:{staff_id}".encode()


def token_digest(token: str) -> str:
    """SHA-256 (hex) of a random token: enough for 256-bit secrets, and one indexed read."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def normalize_staff_email(email: str) -> str:
    """The stored form of a staff email; raise ValidationFailed for something else."""
    try:
        valid = validate_email(email.strip(), check_deliverability=False)
    except EmailNotValidError:
        raise ValidationFailed("not an email address") from None
    return valid.normalized.lower()


def staff_actor(staff: StaffUser) -> str:
    """How the audit trail names a staff member: by id, so no address is in the trail."""
    return f"staff:{staff.id}"


def staff_person(staff: StaffUser) -> str:
    """How a staff member is named where the *person* must be told apart across the faces:
    the reviewer of a support-assisted email change, whom four eyes compare with the filer
    (a CLI login name, an API client, ``--by``). The email is the person; a row id is not,
    and ``staff:7`` would pass for a CLI user named ``7`` (``assisted.person``). A staff
    address is no leaked address: it may stand in the trail."""
    return f"staff:{staff.email}"


def create_staff_user(
    session: Session, *, email: str, role: StaffRole, actor: str, now: datetime
) -> Enrolment:
    """Create a staff user who must enrol through the returned link; raise AlreadyExists."""
    address = normalize_staff_email(email)
    if session.scalars(select(StaffUser.id).where(StaffUser.email == address)).first():
        raise AlreadyExists("a staff user with this email exists")
    staff = StaffUser(email=address, role=role, failed_logins=0, created_at=now)
    session.add(staff)
    session.flush()
    enrolment = _new_enrolment(staff, now)
    record_event(
        session,
        actor=actor,
        action="staff.user_created",
        target=staff_actor(staff),
        detail={"role": role.value},
        now=now,
    )
    return enrolment


def list_staff_users(session: Session) -> list[StaffUser]:
    return list(session.scalars(select(StaffUser).order_by(StaffUser.email)))


def find_staff_user(session: Session, email: str) -> StaffUser:
    """The staff user with ``email``, locked for update; raise NotFound."""
    staff = session.scalars(
        select(StaffUser).where(StaffUser.email == normalize_staff_email(email)).with_for_update()
    ).one_or_none()
    if staff is None:
        raise NotFound("no staff user with this email")
    return staff


def disable_staff_user(session: Session, *, email: str, actor: str, now: datetime) -> bool:
    """Disable the user and end their sessions; return False if disabled already."""
    staff = find_staff_user(session, email)
    if staff.disabled_at is not None:
        return False
    staff.disabled_at = now
    staff.enrol_token_hash = None
    staff.enrol_expires_at = None
    end_sessions_of(session, staff.id, now=now)
    record_event(
        session, actor=actor, action="staff.user_disabled", target=staff_actor(staff), now=now
    )
    return True


def reset_staff_totp(session: Session, *, email: str, actor: str, now: datetime) -> Enrolment:
    """Forget the user's TOTP (and password), end their sessions, and return a new
    enrolment link through which they set both again; raise NotFound."""
    staff = find_staff_user(session, email)
    if staff.disabled_at is not None:
        raise ValidationFailed("this staff user is disabled")
    staff.totp_secret = None
    staff.totp_last_step = None
    staff.password_hash = None
    staff.enrolled_at = None
    end_sessions_of(session, staff.id, now=now)
    enrolment = _new_enrolment(staff, now)
    record_event(
        session, actor=actor, action="staff.totp_reset", target=staff_actor(staff), now=now
    )
    return enrolment


def end_sessions_of(session: Session, staff_id: int, *, now: datetime) -> None:
    session.execute(
        update(StaffSession)
        .where(StaffSession.staff_id == staff_id, StaffSession.ended_at.is_(None))
        .values(ended_at=now)
    )


def _new_enrolment(staff: StaffUser, now: datetime) -> Enrolment:
    token = secrets.token_urlsafe(ENROL_TOKEN_BYTES)
    staff.enrol_token_hash = token_digest(token)
    staff.enrol_expires_at = now + ENROL_TTL
    return Enrolment(
        staff_id=staff.id,
        email=staff.email,
        role=staff.role,
        token=token,
        expires_at=now + ENROL_TTL,
    )


# --- enrolment ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class EnrolmentPage:
    """What the enrolment page shows: the secret as text beside its QR code."""

    email: str
    enrollment: totp.TotpEnrollment


def open_enrolment(
    session: Session, secrets_: StaffSecrets, token: str, *, issuer: str, now: datetime
) -> EnrolmentPage:
    """The TOTP secret the link offers and its QR code; raise EnrolmentInvalid. Reads
    only: the page may be opened (and reloaded, and fetched by a link scanner) any number
    of times, and the secret is the same each time."""
    staff = _enrolling(session, token, now, lock=False)
    secret = secrets_.enrolment_secret(staff.id, token_digest(token))
    return EnrolmentPage(
        email=staff.email,
        enrollment=totp.enrollment(secret, name=staff.email, issuer=issuer),
    )


def complete_enrolment(
    session: Session,
    secrets_: StaffSecrets,
    token: str,
    *,
    password: str,
    code: str,
    now: datetime,
) -> StaffUser:
    """Set the password and confirm the link's TOTP secret with ``code``; the link is then
    spent. Raise EnrolmentInvalid, PasswordRefused or CodeRefused (nothing changes then)."""
    staff = _enrolling(session, token, now)
    check_password_policy(password)
    secret = secrets_.enrolment_secret(staff.id, token_digest(token))
    step = totp.step_of(secret, code, now)
    if step is None:
        raise CodeRefused()
    staff.password_hash = hash_password(password)
    staff.totp_secret = secrets_.seal(staff.id, secret)
    staff.totp_last_step = step
    staff.enrol_token_hash = None
    staff.enrol_expires_at = None
    staff.enrolled_at = now
    staff.failed_logins = 0
    record_event(
        session,
        actor=staff_actor(staff),
        action="staff.enrolled",
        target=staff_actor(staff),
        now=now,
    )
    return staff


def _enrolling(session: Session, token: str, now: datetime, *, lock: bool = True) -> StaffUser:
    if not token or len(token) > 200:
        raise EnrolmentInvalid()
    query = select(StaffUser).where(StaffUser.enrol_token_hash == token_digest(token))
    staff = session.scalars(query.with_for_update() if lock else query).one_or_none()
    if (
        staff is None
        or staff.disabled_at is not None
        or staff.enrol_expires_at is None
        or staff.enrol_expires_at <= now
    ):
        raise EnrolmentInvalid()
    return staff


# --- login and re-authentication ------------------------------------------------------------


def log_in(
    session: Session,
    secrets_: StaffSecrets,
    *,
    email: str,
    password: str,
    code: str,
    ip: str,
    now: datetime,
) -> LoginResult:
    """Check email, password and TOTP code together. A refusal says nothing of which was
    wrong: its cause goes to the log (address masked) and to an audit row. Counts failed
    logins on the staff row; a success resets the count. Never raises for bad input."""
    try:
        address = normalize_staff_email(email)
    except ValidationFailed:
        address = None
    staff = None
    if address is not None:
        staff = session.scalars(
            select(StaffUser).where(StaffUser.email == address).with_for_update()
        ).one_or_none()
    # The password is always hashed once, so the answer's time does not say which failed.
    password_ok = password_matches(staff.password_hash if staff else None, password)
    failure = _login_failure(staff, password_ok)
    if staff is not None and failure is None:
        failure = check_code(secrets_, staff, code, now)
    if failure is not None or staff is None:
        failure = failure or LoginFailure.UNKNOWN_EMAIL
        logger.warning(
            "staff login refused for %s from %s: %s",
            mask_email(email),
            ip,
            failure.value,
        )
        if staff is not None:
            staff.failed_logins += 1
            staff.last_failed_login_at = now
        record_event(
            session,
            actor=staff_actor(staff) if staff is not None else "anonymous",
            action="staff.login_refused",
            target=staff_actor(staff) if staff is not None else None,
            detail={"cause": failure.value, "ip": ip},
            now=now,
        )
        return LoginResult(None, failure)
    staff.failed_logins = 0
    staff.last_login_at = now
    record_event(
        session,
        actor=staff_actor(staff),
        action="staff.login",
        target=staff_actor(staff),
        detail={"ip": ip},
        now=now,
    )
    return LoginResult(staff)


def _login_failure(staff: StaffUser | None, password_ok: bool) -> LoginFailure | None:
    if staff is None:
        return LoginFailure.UNKNOWN_EMAIL
    if staff.disabled_at is not None:
        return LoginFailure.DISABLED
    if staff.totp_secret is None or staff.password_hash is None:
        return LoginFailure.NOT_ENROLLED
    if not password_ok:
        return LoginFailure.WRONG_PASSWORD
    return None


def check_code(
    secrets_: StaffSecrets, staff: StaffUser, code: str, now: datetime
) -> LoginFailure | None:
    """None if ``code`` is the staff user's current TOTP code, not used before (the step is
    then remembered so the same code does not work twice); else why not: WRONG_CODE, or
    REPLAYED_CODE for a right code of a step accepted already. The person is shown one
    generic refusal either way; the cause is for the log and the audit row."""
    if staff.totp_secret is None:
        return LoginFailure.WRONG_CODE
    try:
        secret = secrets_.open(staff.id, staff.totp_secret)
    except SecretUnreadable:
        logger.error("the TOTP secret of staff user %s does not decrypt", staff.id)
        return LoginFailure.WRONG_CODE
    step = totp.step_of(secret, code, now)
    if step is None:
        return LoginFailure.WRONG_CODE
    if staff.totp_last_step is not None and step <= staff.totp_last_step:
        return LoginFailure.REPLAYED_CODE
    staff.totp_last_step = step
    return None
