"""Encryption at rest (`SecretBox`), API key hashes, the per-cluster SSH CA and its policy,
as pure functions."""

from __future__ import annotations

import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from clusterplane.domain.ssh_policy import DEFAULT, SshPolicy
from clusterplane.errors import InvalidRequest
from clusterplane.services.access.auth import hash_secret, secret_matches
from clusterplane.services.access.sealing import SealError, SecretBox, is_sealed
from clusterplane.services.clusters.ssh_ca import issue_ssh_ca, parse_user_key, sign_user_key

KEY = "k" * 40
OTHER = "o" * 40
NOW = datetime(2026, 5, 6, 7, 8, 9, tzinfo=UTC)


def test_a_sealed_text_opens_only_in_its_own_context():
    box = SecretBox(KEY)
    sealed = box.seal("-----BEGIN PRIVATE KEY-----", context="cluster:a:ca_key")
    assert is_sealed(sealed) and "PRIVATE" not in sealed
    assert box.open(sealed, context="cluster:a:ca_key") == "-----BEGIN PRIVATE KEY-----"
    with pytest.raises(SealError):
        box.open(sealed, context="cluster:b:ca_key")


def test_sealing_twice_gives_different_texts():
    box = SecretBox(KEY)
    assert box.seal("x", context="c") != box.seal("x", context="c")


def test_a_tampered_seal_does_not_open():
    box = SecretBox(KEY)
    sealed = box.seal("secret", context="c")
    flipped = sealed[:-2] + ("A" if sealed[-2] != "A" else "B") + sealed[-1]
    with pytest.raises(SealError):
        box.open(flipped, context="c")


@pytest.mark.parametrize("damage", ["é", "\n", "$", " "])
def test_a_seal_with_characters_outside_base64_is_refused_as_unreadable(damage: str):
    box = SecretBox(KEY)
    sealed = box.seal("secret", context="c")
    middle = len(sealed) - 8
    with pytest.raises(SealError, match="not a readable sealed value"):
        box.open(sealed[:middle] + damage + sealed[middle:], context="c")


def test_a_box_with_the_old_key_as_previous_opens_old_seals_and_seals_with_the_new_key():
    old = SecretBox(KEY).seal("secret", context="c")
    rotated = SecretBox(OTHER, previous=(KEY,))
    assert rotated.open(old, context="c") == "secret"
    assert not rotated.is_current(old)
    assert rotated.is_current(rotated.seal("secret", context="c"))
    with pytest.raises(SealError, match="lacks"):
        SecretBox(OTHER).open(old, context="c")


def test_text_stored_before_sealing_existed_reads_as_it_is():
    assert SecretBox(KEY).open("YXBpVmVyc2lvbjogdjEK", context="c") == "YXBpVmVyc2lvbjogdjEK"


def test_a_short_server_key_is_refused():
    with pytest.raises(InvalidRequest, match="32"):
        SecretBox("short")


def _user_key() -> str:
    public = ed25519.Ed25519PrivateKey.generate().public_key()
    line = public.public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    return line.decode() + " me@laptop"


def test_an_ssh_ca_signs_a_user_certificate_that_ssh_keygen_reads(tmp_path: Path):
    ca = issue_ssh_ca("cl-1")
    assert ca.public_key.startswith("ssh-ed25519 ") and ca.public_key.endswith(
        " clusterplane-ssh-ca-cl-1"
    )
    cert = sign_user_key(
        ca.private_key_pem,
        parse_user_key(_user_key()),
        login="ubuntu",
        key_id="alice@cl-1",
        serial=7,
        valid_after=NOW,
        valid_before=NOW + timedelta(hours=1),
        extensions=("permit-pty",),
    )
    path = tmp_path / "id-cert.pub"
    path.write_text(cert + "\n")
    shown = subprocess.run(
        ["ssh-keygen", "-L", "-f", str(path)], capture_output=True, text=True, check=True
    ).stdout
    assert "user certificate" in shown
    assert 'Key ID: "alice@cl-1"' in shown
    assert "Serial: 7" in shown
    assert "ubuntu" in shown
    assert "permit-pty" in shown


def test_each_cluster_gets_its_own_ssh_ca():
    assert issue_ssh_ca("a").public_key.split()[1] != issue_ssh_ca("a").public_key.split()[1]


@pytest.mark.parametrize(
    "line",
    [
        "",
        "ssh-ed25519",
        "ssh-ed25519 !!!notbase64",
        "ssh-dss AAAAB3NzaC1kc3MAAACBAP",
        "hello world",
    ],
)
def test_unreadable_public_keys_are_refused(line: str):
    with pytest.raises(InvalidRequest):
        parse_user_key(line)


def test_ecdsa_keys_are_accepted_and_fingerprinted_like_ssh_keygen():
    public = ec.generate_private_key(ec.SECP256R1()).public_key()
    line = public.public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    ).decode()
    assert parse_user_key(line).fingerprint.startswith("SHA256:")


def test_a_box_without_a_key_stores_text_as_it_is_but_opens_what_a_previous_key_sealed():
    old = SecretBox(KEY).seal("secret", context="c")
    keyless = SecretBox(None, previous=(KEY,))
    assert keyless.seal("secret", context="c") == "secret"
    assert keyless.open(old, context="c") == "secret"
    assert not keyless.is_current(old) and keyless.is_current("secret")


def test_lookup_keys_follow_the_credentials_keys_current_first():
    assert SecretBox(KEY, (OTHER,)).lookup_keys[0] == SecretBox(KEY).lookup_keys[0]
    assert SecretBox(KEY, (OTHER,)).lookup_keys[1] == SecretBox(OTHER).lookup_keys[0]
    assert SecretBox(KEY).lookup_keys != SecretBox(OTHER).lookup_keys
    assert KEY.encode() not in SecretBox(KEY).lookup_keys[0]


def test_api_key_hashes_are_salted_and_name_their_scheme():
    for chosen, scheme in ((True, "scrypt$"), (False, "hmac-sha256$")):
        first, second = (hash_secret("s3cret-value", chosen=chosen) for _ in range(2))
        assert first.startswith(scheme) and first != second
        assert secret_matches(first, "s3cret-value") and secret_matches(second, "s3cret-value")
        assert not secret_matches(first, "s3cret-valuE")
    for damaged in ("", "md5$00$00", "scrypt$zz$00", "hmac-sha256"):
        assert not secret_matches(damaged, "s3cret-value")


def test_the_default_ssh_policy_grants_a_pty_and_refuses_root():
    assert DEFAULT.refusal("root") is not None and DEFAULT.refusal("ubuntu") is None
    assert DEFAULT.extensions(jumphost=False) == ("permit-pty",)
    assert DEFAULT.extensions(jumphost=True) == ("permit-port-forwarding", "permit-pty")
    listed = SshPolicy.from_dict({"allowed_logins": ["root"], "permit_user_rc": True})
    assert listed.refusal("root") is None and listed.refusal("ubuntu") is not None
    assert listed.extensions(jumphost=False) == ("permit-pty", "permit-user-rc")
    assert SshPolicy.from_dict(listed.to_dict()) == listed
    assert SshPolicy.from_dict(None) == DEFAULT == SshPolicy.from_dict({})
