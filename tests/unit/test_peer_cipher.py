"""PeerCipher: what PySyncObj's transport relies on from its encryptor."""

from __future__ import annotations

import pytest

from mcpctl.raft.cipher import PeerCipher, PeerCipherError

SECRET = "unit-test-cluster-secret"


@pytest.fixture(scope="module")
def cipher() -> PeerCipher:
    return PeerCipher(SECRET)


def test_round_trip_and_timestamp(cipher: PeerCipher) -> None:
    frame = cipher.encrypt_at_time(b"append entries", 1234)
    assert cipher.extract_timestamp(frame) == 1234
    assert cipher.decrypt(frame) == b"append entries"
    assert b"append entries" not in frame


def test_same_secret_on_another_member_reads_it(cipher: PeerCipher) -> None:
    other = PeerCipher(SECRET)
    assert other.decrypt(cipher.encrypt_at_time(b"vote", 7)) == b"vote"


def test_fresh_nonce_per_frame(cipher: PeerCipher) -> None:
    assert cipher.encrypt_at_time(b"x", 1) != cipher.encrypt_at_time(b"x", 1)


def test_wrong_secret_is_refused(cipher: PeerCipher) -> None:
    frame = PeerCipher("another-cluster-secret").encrypt_at_time(b"join me", 5)
    with pytest.raises(PeerCipherError):
        cipher.decrypt(frame)


@pytest.mark.parametrize("position", [0, 7, 8, 19, 20, -1])
def test_any_flipped_bit_is_refused(cipher: PeerCipher, position: int) -> None:
    """The timestamp (0-7), nonce (8-19) and ciphertext/tag are all authenticated."""
    frame = bytearray(cipher.encrypt_at_time(b"commit index 42", 99))
    frame[position] ^= 0x01
    with pytest.raises(PeerCipherError):
        cipher.decrypt(bytes(frame))


@pytest.mark.parametrize("length", [0, 1, 8, 19, 20, 35])
def test_short_frames_are_refused(cipher: PeerCipher, length: int) -> None:
    frame = cipher.encrypt_at_time(b"", 1)[:length]
    with pytest.raises(PeerCipherError):
        cipher.decrypt(frame)
    if length < 20:
        with pytest.raises(PeerCipherError):
            cipher.extract_timestamp(frame)
