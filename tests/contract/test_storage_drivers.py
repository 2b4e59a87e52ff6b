"""The contract every storage driver keeps: a volume is created, grown and deleted, each
repeatable after a crash; a deleted volume stays deleted; unreadable state is a
`PermanentProviderError`."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime

import pytest

from clusterplane.errors import PermanentProviderError
from clusterplane.providers.models import DriverState, VolumeProgress
from tests.contract.kits import StorageKit
from tests.contract.support import converge, persisted


@pytest.fixture
def kit(storage_kit: StorageKit) -> StorageKit:
    return storage_kit


def test_a_volume_is_created_grown_and_deleted(kit: StorageKit):
    volume = kit.volume
    kit.storage.create_volume(volume, kit.now)  # lost in a crash before it was saved
    created = kit.storage.create_volume(volume, kit.advance())
    ready = converge(kit, lambda s, now: kit.storage.describe_volume(volume, s, now), created.state)
    assert ready.size_tib == volume.size_tib
    bigger = replace(volume, size_tib=volume.size_tib * 2)
    resizing = kit.storage.resize_volume(bigger, persisted(ready.state), kit.advance())
    again = kit.storage.resize_volume(bigger, persisted(resizing.state), kit.advance())

    def grown_to(state: DriverState, now: datetime) -> VolumeProgress:
        progress = kit.storage.describe_volume(bigger, state, now)
        return replace(progress, done=progress.size_tib >= bigger.size_tib)

    grown = converge(kit, grown_to, again.state)
    assert grown.size_tib == bigger.size_tib
    deleted = converge(kit, lambda s, now: kit.storage.delete_volume(bigger, s, now), grown.state)
    assert kit.storage.delete_volume(bigger, persisted(deleted.state), kit.advance()).done


@pytest.mark.parametrize("garbage", [{}, {"created_at": "never", "create": 1}])
def test_state_the_storage_driver_cannot_read_is_a_permanent_failure(
    kit: StorageKit, garbage: dict[str, object]
):
    with pytest.raises(PermanentProviderError) as failure:
        kit.storage.describe_volume(kit.volume, garbage, kit.now)
    assert failure.value.message
