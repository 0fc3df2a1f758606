"""The bound on photos decoded at once per worker: a burst beyond it waits its turn, then succeeds; a bad photo
gives its slot back; nothing is a 500."""

import io
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from rest_framework.test import APIClient

from apps.plant_identification.decode_slots import DECODE_SLOTS
from apps.plant_identification.images import ImageRejectedError, image_normalise
from tests.factories import jpeg_bytes
from tests.plant_identification.views.test_identify_view import post, upload


@pytest.fixture
def one_slot(settings):
    settings.IDENTIFY_MAX_CONCURRENT_DECODES = 1
    DECODE_SLOTS.reset_peak()


@pytest.mark.django_db(transaction=True)
def test_an_upload_beyond_the_bound_waits_for_a_slot_then_is_answered(one_slot, user, plant_id_ok, plantnet_ok):
    client = APIClient()
    client.force_authenticate(user)
    answered = threading.Event()
    responses = []

    def identify():
        responses.append(post(client))
        answered.set()

    with DECODE_SLOTS.slot():  # another request's photo holds the only slot
        caller = threading.Thread(target=identify)
        caller.start()
        assert not answered.wait(0.3)  # still waiting for the slot: not refused, not decoded
        assert len(plant_id_ok.calls) == 0
    caller.join(10)
    assert responses[0].status_code == 200, responses[0].content
    assert DECODE_SLOTS.in_use == 0


def test_a_burst_never_decodes_more_photos_at_once_than_the_bound(settings):
    settings.IDENTIFY_MAX_CONCURRENT_DECODES = 2
    DECODE_SLOTS.reset_peak()
    photos = [jpeg_bytes((10 * i, 120, 40), size=(2400, 1800)) for i in range(8)]
    with ThreadPoolExecutor(max_workers=8) as pool:
        images = list(pool.map(lambda data: image_normalise(io.BytesIO(data)), photos))
    assert len({image.sha256 for image in images}) == 8
    assert 1 <= DECODE_SLOTS.peak <= 2
    assert DECODE_SLOTS.in_use == 0


def test_a_corrupt_photo_gives_its_slot_back(one_slot):
    truncated = jpeg_bytes(size=(1200, 900))[:5000]
    for _ in range(3):  # with the slot leaked, the second attempt would wait for ever
        with pytest.raises(ImageRejectedError, match="corrupt or truncated"):
            image_normalise(io.BytesIO(truncated))
    assert DECODE_SLOTS.in_use == 0


@pytest.mark.django_db
def test_a_photo_refused_from_its_header_takes_no_slot(one_slot, api_client, mocked_responses):
    with DECODE_SLOTS.slot():  # the only slot is taken: a header check must not wait for it
        response = post(api_client, images=[upload("tiny.jpg", jpeg_bytes(size=(50, 50)))])
    assert response.status_code == 400
    assert "too small" in response.json()["errors"]["images"][0]
    assert len(mocked_responses.calls) == 0
