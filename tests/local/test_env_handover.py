"""A root daemon gives an environment only what is its own: a new, empty or already-its-own data folder, and an OS
user it created for that environment.

The folder's path and the user's name are the spec's, and the agent writes the spec: a staging spec naming
``/root/.config/…/keys`` as its data folder, or production's user as its own, must change nothing.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from railguard.providers.local.isolation import (
    FolderTaken,
    RunAs,
    UserTaken,
    claim_user,
    ensure_user,
    prepare_data,
)

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="handing folders to another user needs root")


@pytest.fixture(scope="module")
def env_user() -> RunAs:
    return ensure_user("rg-test-handover")


def owners(folder: Path) -> set[int]:
    return {os.lstat(p).st_uid for p in [folder, *folder.rglob("*")]}


def test_someone_elses_folder_is_refused_and_left_as_it_was(tmp_path: Path, env_user: RunAs) -> None:
    keys = tmp_path / "keys"
    keys.mkdir()
    (keys / "signing.key").write_text("secret")
    with pytest.raises(FolderTaken, match="not empty and belongs to"):
        prepare_data(keys, env_user)
    assert owners(keys) == {0} and (keys.stat().st_mode & 0o777) != 0o700


def test_a_new_or_empty_folder_is_handed_over(tmp_path: Path, env_user: RunAs) -> None:
    new, empty = tmp_path / "a" / "new", tmp_path / "empty"
    empty.mkdir()
    for folder in (new, empty):
        prepare_data(folder, env_user)
        assert owners(folder) == {env_user.uid} and (folder.stat().st_mode & 0o777) == 0o700
    (new / "app.db").write_text("rows")  # the environment's own folder stays usable on the next deploy
    os.chown(new / "app.db", env_user.uid, env_user.gid)
    prepare_data(new, env_user)


def test_the_default_folder_is_adopted_but_a_hard_linked_file_is_left_alone(tmp_path: Path, env_user: RunAs) -> None:
    elsewhere = tmp_path / "shadow"
    elsewhere.write_text("root's")
    data = tmp_path / "state" / "data" / "staging"
    data.mkdir(parents=True)
    (data / "app.db").write_text("rows written in shared-user mode")
    os.link(elsewhere, data / "linked")  # what a root app could leave behind in shared-user mode
    prepare_data(data, env_user, adopt=True)
    assert os.lstat(data / "app.db").st_uid == env_user.uid
    assert os.lstat(elsewhere).st_uid == 0


def test_a_link_in_place_of_the_folder_is_refused(tmp_path: Path, env_user: RunAs) -> None:
    target = tmp_path / "target"
    target.mkdir()
    (tmp_path / "link").symlink_to(target)
    with pytest.raises(FolderTaken, match="not a folder"):
        prepare_data(tmp_path / "link", env_user, adopt=True)
    assert owners(target) == {0}


def test_a_spec_cannot_name_an_existing_account_or_another_environments(tmp_path: Path) -> None:
    home = tmp_path / "state"
    home.mkdir()
    with pytest.raises(UserTaken, match="existing account"):
        claim_user(home, "staging", "nobody", named_by_spec=True)
    for reserved in ("rg-edge", "rg-build-shop", "rg-scratch-shop", "rg-shop-production_pg", "root"):
        with pytest.raises(UserTaken, match="Railguard's own"):
            claim_user(home, "staging", reserved, named_by_spec=True)
    claim_user(home, "production", "rg-test-claim-prod", named_by_spec=False)  # production's, created now
    with pytest.raises(UserTaken, match="environment production's user"):
        claim_user(home, "staging", "rg-test-claim-prod", named_by_spec=True)
    assert claim_user(home, "production", "rg-test-claim-prod", named_by_spec=True).name == "rg-test-claim-prod"
    assert (home / "users.json").stat().st_mode & 0o777 == 0o600


def test_a_default_account_from_before_the_ledger_is_bound_on_first_sight(tmp_path: Path, env_user: RunAs) -> None:
    home = tmp_path / "state"
    home.mkdir()
    assert claim_user(home, "staging", env_user.name, named_by_spec=False).uid == env_user.uid
    with pytest.raises(UserTaken, match="environment staging's user"):
        claim_user(home, "production", env_user.name, named_by_spec=False)
