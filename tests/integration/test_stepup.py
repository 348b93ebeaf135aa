"""Step-up rules (service/stepup.py) with a frozen clock, on SQLite and PostgreSQL.

The rows of ../shared/SECURITY.md on TOTP, emailed codes, recovery codes, lockout and
assurance tokens, each proven on the domain module; tests/integration/test_stepup_api.py
proves them again over HTTP, with concurrency and rate limits.
"""

from __future__ import annotations

import math
import time
from datetime import UTC, datetime, timedelta

import pyotp
import pytest
from sqlalchemy import select, text

from service.db import utcnow
from service.models import (
    AuditEvent,
    ChallengeState,
    Notice,
    NoticeKind,
    RecoveryCode,
    StepUpChallenge,
    TotpCredential,
)
from service.risk import load_facts
from service.runtime import Runtime
from service.stepup.assurance import AssuranceTokenExpired, AssuranceTokenInvalid
from service.stepup.recovery_codes import BASE32_ALPHABET, SECRET_CHARS, normalize_code
from service.stepup.secret_box import SecretBox, SecretUnreadable
from service.stepup.services import Method, Outcome, Passed, Refused
from service.stepup.throttle import Locked
from tests.support.factories import ACTOR, enroll_totp, make_account
from tests.support.settings import TEST_HASH_KEY

# Mid-step (steps start at :00 and :30), so that +-31 s lands one step away and +-61 s two.
# A moment after every account a test creates: failures dated before an account existed
# would not count against it. On a TOTP step boundary plus 15 s.
T0 = datetime.fromtimestamp((int(time.time()) // 30 + 120) * 30 + 15, tz=UTC)


def verify(
    runtime: Runtime,
    external_id: str,
    method: Method,
    code: str,
    *,
    now: datetime,
    challenge_id: str | None = None,
) -> Outcome:
    with runtime.db.transaction() as session:
        return runtime.step_up.verify(
            session, external_id, method, code, challenge_id=challenge_id, actor=ACTOR, now=now
        )


def challenge(runtime: Runtime, external_id: str, *, now: datetime) -> str:
    with runtime.db.transaction() as session:
        return runtime.step_up.start_email_challenge(session, external_id, actor=ACTOR, now=now).id


def recovery_codes(
    runtime: Runtime, external_id: str, *, now: datetime = T0, token: str | None = None
) -> list[str]:
    with runtime.db.transaction() as session:
        return runtime.step_up.new_recovery_codes(
            session, external_id, assurance_token=token, actor=ACTOR, now=now
        )


def passed(outcome: Outcome) -> bool:
    return isinstance(outcome, Passed)


# --- TOTP -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("offset", "accepted"), [(-61, False), (-31, True), (0, True), (31, True), (61, False)]
)
def test_totp_accepts_one_step_of_drift_only(runtime: Runtime, offset: int, accepted: bool) -> None:
    make_account(runtime, "drift")
    totp = enroll_totp(runtime, "drift", now=T0 - timedelta(minutes=5))
    code = totp.at(T0 + timedelta(seconds=offset))
    assert passed(verify(runtime, "drift", Method.TOTP, code, now=T0)) is accepted


def test_totp_code_is_accepted_once(runtime: Runtime) -> None:
    make_account(runtime, "replay")
    totp = enroll_totp(runtime, "replay", now=T0 - timedelta(minutes=5))
    code = totp.at(T0)
    assert passed(verify(runtime, "replay", Method.TOTP, code, now=T0))
    assert not passed(verify(runtime, "replay", Method.TOTP, code, now=T0 + timedelta(seconds=5)))


def test_previous_step_code_after_the_current_one_is_refused(runtime: Runtime) -> None:
    make_account(runtime, "older")
    totp = enroll_totp(runtime, "older", now=T0 - timedelta(minutes=5))
    assert passed(verify(runtime, "older", Method.TOTP, totp.at(T0), now=T0))
    previous = totp.at(T0 - timedelta(seconds=30))
    assert not passed(verify(runtime, "older", Method.TOTP, previous, now=T0))


def test_enrolment_code_cannot_be_replayed_as_a_step_up(runtime: Runtime) -> None:
    make_account(runtime, "confirm")
    totp = enroll_totp(runtime, "confirm", now=T0)  # confirmed with totp.at(T0)
    assert not passed(verify(runtime, "confirm", Method.TOTP, totp.at(T0), now=T0))
    later = T0 + timedelta(seconds=30)
    assert passed(verify(runtime, "confirm", Method.TOTP, totp.at(later), now=later))


def test_unconfirmed_enrolment_does_not_replace_the_working_authenticator(
    runtime: Runtime,
) -> None:
    make_account(runtime, "phone")
    old = enroll_totp(runtime, "phone", now=T0 - timedelta(minutes=5))
    # Replacing a confirmed authenticator takes a step-up with it (or a recovery code).
    earlier = T0 - timedelta(minutes=4)
    outcome = verify(runtime, "phone", Method.TOTP, old.at(earlier), now=earlier)
    assert isinstance(outcome, Passed)
    with runtime.db.transaction() as session:
        new = pyotp.TOTP(
            runtime.step_up.enroll_totp(
                session, "phone", assurance_token=outcome.token, actor=ACTOR, now=T0
            ).secret
        )
    assert not passed(verify(runtime, "phone", Method.TOTP, new.at(T0), now=T0))
    assert passed(verify(runtime, "phone", Method.TOTP, old.at(T0), now=T0))


def test_enrolment_gives_a_provisioning_uri_and_qr_codes(runtime: Runtime) -> None:
    make_account(runtime, "qr")
    with runtime.db.transaction() as session:
        enrollment = runtime.step_up.enroll_totp(
            session, "qr", assurance_token=None, actor=ACTOR, now=T0
        )
    parsed = pyotp.parse_uri(enrollment.provisioning_uri)
    assert parsed.secret == enrollment.secret
    assert parsed.issuer == "Leakguard"
    assert len(base32_bits(enrollment.secret)) >= 160
    assert enrollment.qr_svg.startswith("<svg")
    assert enrollment.qr_png.startswith(b"\x89PNG\r\n\x1a\n")


def base32_bits(secret: str) -> str:
    return "".join(f"{BASE32_ALPHABET.index(ch):05b}" for ch in secret.rstrip("="))


def test_totp_secret_is_not_in_the_database_in_the_clear(runtime: Runtime) -> None:
    account_id = make_account(runtime, "dump")
    with runtime.db.transaction() as session:
        secret = runtime.step_up.enroll_totp(
            session, "dump", assurance_token=None, actor=ACTOR, now=T0
        ).secret
    with runtime.db.read_session() as session:
        stored = session.get(TotpCredential, account_id)
        assert stored is not None
        assert stored.pending_secret is not None
        sealed = stored.pending_secret
    assert secret.encode() not in sealed
    assert pyotp.TOTP(secret).byte_secret() not in sealed
    # Only the deployment's key opens it, and only for this account.
    box = SecretBox(TEST_HASH_KEY.encode(), "totp-secret")
    assert box.open(sealed, f"totp:{account_id}".encode()) == secret.encode()
    with pytest.raises(SecretUnreadable):
        box.open(sealed, f"totp:{account_id + 1}".encode())
    with pytest.raises(SecretUnreadable):
        SecretBox(b"another-deployment-key-000000000", "totp-secret").open(
            sealed, f"totp:{account_id}".encode()
        )


# --- emailed codes ----------------------------------------------------------------------


def test_emailed_code_accepted_at_9_59_refused_at_10_01(runtime: Runtime) -> None:
    make_account(runtime, "mail")
    first = challenge(runtime, "mail", now=T0)
    code = runtime.step_up.email_code(first)
    late = T0 + timedelta(minutes=10, seconds=1)
    assert not passed(
        verify(runtime, "mail", Method.EMAIL_CODE, code, challenge_id=first, now=late)
    )
    second = challenge(runtime, "mail", now=T0)
    in_time = T0 + timedelta(minutes=9, seconds=59)
    code = runtime.step_up.email_code(second)
    assert passed(
        verify(runtime, "mail", Method.EMAIL_CODE, code, challenge_id=second, now=in_time)
    )


def test_emailed_code_works_once(runtime: Runtime) -> None:
    make_account(runtime, "once")
    cid = challenge(runtime, "once", now=T0)
    code = runtime.step_up.email_code(cid)
    assert passed(verify(runtime, "once", Method.EMAIL_CODE, code, challenge_id=cid, now=T0))
    assert not passed(verify(runtime, "once", Method.EMAIL_CODE, code, challenge_id=cid, now=T0))


def test_emailed_code_is_bound_to_its_challenge_and_account(runtime: Runtime) -> None:
    make_account(runtime, "alice")
    make_account(runtime, "bob")
    a = challenge(runtime, "alice", now=T0)
    b = challenge(runtime, "bob", now=T0)
    code_a = runtime.step_up.email_code(a)
    assert runtime.step_up.email_code(b) != code_a or a == b
    assert not passed(verify(runtime, "bob", Method.EMAIL_CODE, code_a, challenge_id=b, now=T0))
    # Alice's challenge id and code, presented for Bob's account.
    assert not passed(verify(runtime, "bob", Method.EMAIL_CODE, code_a, challenge_id=a, now=T0))
    assert passed(verify(runtime, "alice", Method.EMAIL_CODE, code_a, challenge_id=a, now=T0))


def test_a_new_code_voids_the_old_one(runtime: Runtime) -> None:
    make_account(runtime, "again")
    old = challenge(runtime, "again", now=T0)
    new = challenge(runtime, "again", now=T0 + timedelta(seconds=20))
    old_code = runtime.step_up.email_code(old)
    assert not passed(
        verify(runtime, "again", Method.EMAIL_CODE, old_code, challenge_id=old, now=T0)
    )
    new_code = runtime.step_up.email_code(new)
    assert passed(verify(runtime, "again", Method.EMAIL_CODE, new_code, challenge_id=new, now=T0))


def test_five_tries_then_the_code_is_void(runtime: Runtime) -> None:
    make_account(runtime, "guess")
    cid = challenge(runtime, "guess", now=T0)
    code = runtime.step_up.email_code(cid)
    wrong = f"{(int(code) + 1) % 1_000_000:06d}"
    for _ in range(5):
        assert not passed(
            verify(runtime, "guess", Method.EMAIL_CODE, wrong, challenge_id=cid, now=T0)
        )
    assert not passed(verify(runtime, "guess", Method.EMAIL_CODE, code, challenge_id=cid, now=T0))
    with runtime.db.read_session() as session:
        row = session.get(StepUpChallenge, cid)
        assert row is not None
        assert (row.state, row.attempts) == (ChallengeState.VOID, 5)


def test_a_challenge_queues_one_code_notice_and_stores_no_code(runtime: Runtime) -> None:
    account_id = make_account(runtime, "notice")
    cid = challenge(runtime, "notice", now=T0)
    code = runtime.step_up.email_code(cid)
    with runtime.db.read_session() as session:
        notices = session.scalars(select(Notice).where(Notice.account_id == account_id)).all()
        assert [(n.kind, n.challenge_id) for n in notices] == [(NoticeKind.STEP_UP_CODE, cid)]
    assert_not_stored(runtime, code)


def test_unknown_account_gets_a_challenge_of_the_same_shape_and_no_mail(runtime: Runtime) -> None:
    make_account(runtime, "known")
    with runtime.db.transaction() as session:
        known = runtime.step_up.start_email_challenge(session, "known", actor=ACTOR, now=T0)
        unknown = runtime.step_up.start_email_challenge(session, "nobody", actor=ACTOR, now=T0)
    assert (len(known.id), known.method, known.expires_at) == (
        len(unknown.id),
        unknown.method,
        unknown.expires_at,
    )
    assert known.notice_id is not None
    assert unknown.notice_id is None
    code = runtime.step_up.email_code(unknown.id)
    refused = verify(runtime, "nobody", Method.EMAIL_CODE, code, challenge_id=unknown.id, now=T0)
    assert refused == Refused(None)


# --- recovery codes ---------------------------------------------------------------------


def test_ten_recovery_codes_of_at_least_64_bits_stored_as_argon2id(runtime: Runtime) -> None:
    make_account(runtime, "rc")
    codes = recovery_codes(runtime, "rc")
    assert len(codes) == len(set(codes)) == 10
    secret_bits = SECRET_CHARS * math.log2(len(BASE32_ALPHABET))
    assert secret_bits >= 64
    for code in codes:
        normalized = normalize_code(code)
        assert normalized is not None
        assert set(normalized) <= set(BASE32_ALPHABET)
    with runtime.db.read_session() as session:
        hashes = session.scalars(select(RecoveryCode.code_hash)).all()
    assert len(hashes) == 10
    assert all(h.startswith("$argon2id$") for h in hashes)
    for code in codes:
        assert_not_stored(runtime, normalize_code(code) or code)


def test_recovery_code_works_once_and_forgives_typing(runtime: Runtime) -> None:
    make_account(runtime, "rc-once")
    code = recovery_codes(runtime, "rc-once")[3]
    typed = code.lower().replace("-", " ")
    assert passed(verify(runtime, "rc-once", Method.RECOVERY_CODE, typed, now=T0))
    assert not passed(verify(runtime, "rc-once", Method.RECOVERY_CODE, code, now=T0))


def test_regenerating_voids_every_earlier_recovery_code(runtime: Runtime) -> None:
    make_account(runtime, "rc-new")
    old = recovery_codes(runtime, "rc-new")
    # Replacing the codes takes a step-up with one of them.
    outcome = verify(runtime, "rc-new", Method.RECOVERY_CODE, old[0], now=T0)
    assert isinstance(outcome, Passed)
    new = recovery_codes(runtime, "rc-new", token=outcome.token)
    assert not set(old) & set(new)
    # Nine of them, the ones not used: a tenth failure in a row would lock the method.
    assert not any(
        passed(verify(runtime, "rc-new", Method.RECOVERY_CODE, c, now=T0)) for c in old[1:]
    )
    assert passed(verify(runtime, "rc-new", Method.RECOVERY_CODE, new[0], now=T0))


def methods(runtime: Runtime, external_id: str) -> list[Method]:
    """The methods the account can step up with, read as the risk check reads them."""
    with runtime.db.read_session() as session:
        facts = load_facts(session, external_id, now=utcnow())
    assert facts is not None
    return facts.methods


def test_methods_follow_what_the_account_has(runtime: Runtime) -> None:
    make_account(runtime, "methods")
    assert methods(runtime, "methods") == [Method.EMAIL_CODE]
    with runtime.db.transaction() as session:  # an enrolment not yet confirmed is no method
        runtime.step_up.enroll_totp(
            session, "methods", assurance_token=None, actor=ACTOR, now=T0 - timedelta(hours=1)
        )
    assert methods(runtime, "methods") == [Method.EMAIL_CODE]
    totp = enroll_totp(runtime, "methods", now=T0)
    later = T0 + timedelta(seconds=30)
    outcome = verify(runtime, "methods", Method.TOTP, totp.at(later), now=later)
    assert isinstance(outcome, Passed)
    codes = recovery_codes(runtime, "methods", token=outcome.token)
    assert methods(runtime, "methods") == list(Method)
    for code in codes[:-1]:
        assert passed(verify(runtime, "methods", Method.RECOVERY_CODE, code, now=T0))
    assert methods(runtime, "methods") == list(Method)  # one code left is a method still
    assert passed(verify(runtime, "methods", Method.RECOVERY_CODE, codes[-1], now=T0))
    assert methods(runtime, "methods") == [Method.TOTP, Method.EMAIL_CODE]


# --- lockout ----------------------------------------------------------------------------


def test_ten_failures_lock_for_15_minutes_then_twice_as_long(runtime: Runtime) -> None:
    make_account(runtime, "locked")
    totp = enroll_totp(runtime, "locked", now=T0 - timedelta(hours=1))
    for _ in range(9):
        assert verify(runtime, "locked", Method.TOTP, "000000", now=T0) == Refused(None)
    tenth = verify(runtime, "locked", Method.TOTP, "000000", now=T0)
    assert tenth == Refused(Locked(T0 + timedelta(minutes=15)))
    # Locked: even the right code is refused, without being evaluated.
    right = verify(runtime, "locked", Method.TOTP, totp.at(T0), now=T0 + timedelta(minutes=14))
    assert right == Refused(Locked(T0 + timedelta(minutes=15)))
    later = T0 + timedelta(minutes=15)
    for _ in range(10):
        outcome = verify(runtime, "locked", Method.TOTP, "000000", now=later)
    assert outcome == Refused(Locked(later + timedelta(minutes=30)))
    after = later + timedelta(minutes=30)
    assert passed(verify(runtime, "locked", Method.TOTP, totp.at(after), now=after))
    with runtime.db.read_session() as session:
        actions = session.scalars(
            select(AuditEvent.action).where(AuditEvent.action == "step_up.locked")
        ).all()
    assert len(actions) == 2


def test_a_success_resets_the_failure_count(runtime: Runtime) -> None:
    make_account(runtime, "reset")
    codes = recovery_codes(runtime, "reset")
    for round_ in range(3):
        for _ in range(9):
            assert verify(runtime, "reset", Method.RECOVERY_CODE, "nope", now=T0) == Refused(None)
        assert passed(verify(runtime, "reset", Method.RECOVERY_CODE, codes[round_], now=T0))


def test_support_unlock_ends_the_lock(runtime: Runtime) -> None:
    make_account(runtime, "support")
    for _ in range(10):
        verify(runtime, "support", Method.EMAIL_CODE, "nope", now=T0)
    with runtime.db.transaction() as session:
        assert runtime.step_up.unlock(session, "support", actor="staff:ana", now=T0)
    cid = challenge(runtime, "support", now=T0)
    code = runtime.step_up.email_code(cid)
    assert passed(verify(runtime, "support", Method.EMAIL_CODE, code, challenge_id=cid, now=T0))


# --- assurance tokens -------------------------------------------------------------------


def test_assurance_token_is_bound_to_account_and_method(runtime: Runtime) -> None:
    account_id = make_account(runtime, "token")
    make_account(runtime, "other")
    cid = challenge(runtime, "token", now=T0)
    outcome = verify(
        runtime,
        "token",
        Method.EMAIL_CODE,
        runtime.step_up.email_code(cid),
        challenge_id=cid,
        now=T0,
    )
    assert isinstance(outcome, Passed)
    signer = runtime.step_up.signer
    claims = signer.verify(outcome.token, external_id="token", now=T0 + timedelta(minutes=14))
    assert (claims.account_id, claims.method) == (account_id, "email_code")
    assert outcome.expires_at == T0 + timedelta(minutes=15)
    with pytest.raises(AssuranceTokenExpired):
        signer.verify(outcome.token, external_id="token", now=T0 + timedelta(minutes=15))
    with pytest.raises(AssuranceTokenInvalid):
        signer.verify(outcome.token, external_id="other", now=T0)
    for tampered in tamperings(outcome.token):
        with pytest.raises(AssuranceTokenInvalid):
            signer.verify(tampered, external_id="token", now=T0)


BASE64URL = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


def tamperings(token: str) -> list[str]:
    """The token with one character changed in each of its parts, truncated and extended.

    A character moves by 16 places in the base64url alphabet: that changes one of its four
    high bits, which every character of the signature carries in full (the last one's two
    low bits are padding: changing only those would leave the same signature).
    """

    def flip(char: str) -> str:
        if char not in BASE64URL:
            return "A"
        return BASE64URL[(BASE64URL.index(char) + 16) % 64]

    flipped = [
        token[:i] + flip(token[i]) + token[i + 1 :] for i in (0, len(token) // 2, len(token) - 1)
    ]
    return [*flipped, token[:-3], token + "x", "", "not.a.token"]


# --- helpers ----------------------------------------------------------------------------


def assert_not_stored(runtime: Runtime, secret: str) -> None:
    """``secret`` appears in no text column of any table (a dump would not show it)."""
    with runtime.db.engine.connect() as connection:
        for table in (
            "step_up_challenge",
            "notice",
            "recovery_code",
            "audit_event",
            "totp_credential",
        ):
            rows = connection.execute(text(f"SELECT * FROM {table}")).all()  # noqa: S608
            for row in rows:
                assert all(secret not in str(value) for value in row), table


# --- codes as keyboards and clipboards deliver them --------------------------------------


def full_width(code: str) -> str:
    return "".join(chr(ord(char) + 0xFEE0) for char in code)  # "1" -> U+FF11, "A" -> U+FF21


def arabic_indic(code: str) -> str:
    return "".join(chr(0x0660 + int(char)) if char.isdigit() else char for char in code)


# What a phone's input method, a word processor or a copy from a web page or mail turns a
# digit code into: each is the same code and used to be refused as a wrong guess.
DIGIT_SPELLINGS = {
    "full-width digits": full_width,
    "Arabic-Indic digits": arabic_indic,
    "no-break space": lambda code: code[:3] + "\u00a0" + code[3:],
    "zero-width space": lambda code: code[:3] + "\u200b" + code[3:],
    "line break": lambda code: code[:3] + "\r\n" + code[3:],
    "dash": lambda code: code[:3] + "-" + code[3:],
    "en dash": lambda code: code[:3] + "\u2013" + code[3:],
}


@pytest.mark.parametrize("spelling", sorted(DIGIT_SPELLINGS))
def test_a_totp_code_is_accepted_however_the_keyboard_wrote_it(
    runtime: Runtime, spelling: str
) -> None:
    make_account(runtime, "typed-totp")
    totp = enroll_totp(runtime, "typed-totp", now=T0 - timedelta(minutes=5))
    typed = DIGIT_SPELLINGS[spelling](totp.at(T0))
    assert passed(verify(runtime, "typed-totp", Method.TOTP, typed, now=T0))


@pytest.mark.parametrize("spelling", sorted(DIGIT_SPELLINGS))
def test_an_emailed_code_is_accepted_however_the_keyboard_wrote_it(
    runtime: Runtime, spelling: str
) -> None:
    make_account(runtime, "typed-mail")
    cid = challenge(runtime, "typed-mail", now=T0)
    typed = DIGIT_SPELLINGS[spelling](runtime.step_up.email_code(cid))
    assert passed(verify(runtime, "typed-mail", Method.EMAIL_CODE, typed, challenge_id=cid, now=T0))


RECOVERY_SPELLINGS = {
    "en dashes": lambda code: code.replace("-", "\u2013"),
    "em dashes": lambda code: code.replace("-", "\u2014"),
    "minus signs": lambda code: code.replace("-", "\u2212"),
    "no-break spaces": lambda code: code.replace("-", "\u00a0"),
    "line break": lambda code: code[:9] + "\n" + code[9:],
    "soft hyphens": lambda code: code.replace("-", "\u00ad"),
    "full-width": full_width,
}


@pytest.mark.parametrize("spelling", sorted(RECOVERY_SPELLINGS))
def test_a_recovery_code_is_accepted_however_the_clipboard_wrote_it(
    runtime: Runtime, spelling: str
) -> None:
    make_account(runtime, "typed-rc")
    code = recovery_codes(runtime, "typed-rc")[0]
    typed = RECOVERY_SPELLINGS[spelling](code)
    assert passed(verify(runtime, "typed-rc", Method.RECOVERY_CODE, typed, now=T0))


def test_a_wrong_code_stays_wrong_however_it_is_written(runtime: Runtime) -> None:
    make_account(runtime, "typed-wrong")
    totp = enroll_totp(runtime, "typed-wrong", now=T0 - timedelta(minutes=5))
    right = totp.at(T0)
    wrong = f"{(int(right) + 1) % 10**6:06d}"
    for spelling in DIGIT_SPELLINGS.values():
        assert not passed(verify(runtime, "typed-wrong", Method.TOTP, spelling(wrong), now=T0))
    # Only what keyboards add is dropped: a letter in place of a digit is still refused.
    assert not passed(verify(runtime, "typed-wrong", Method.TOTP, right[:5] + "x", now=T0))
