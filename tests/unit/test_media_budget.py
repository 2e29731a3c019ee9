import pytest

from serve_app.schemas.chat import AudioPart, ImagePart, TextPart
from serve_app.services.media_budget import MediaTally, check_part_counts
from vocabulary.config import MediaSpec
from vocabulary.errors import PayloadTooLarge

MEDIA = MediaSpec(max_image_parts=2, max_audio_parts=1, max_request_pixels=1000, max_request_audio_seconds=10)
IMAGE = ImagePart(type="image_url", image_url={"url": "data:image/png;base64,AAAA"})
AUDIO = AudioPart(type="input_audio", input_audio={"data": "AAAA", "format": "wav"})
TEXT = TextPart(type="text", text="hi")


def test_parts_are_counted_per_kind():
    check_part_counts([TEXT, IMAGE, IMAGE, AUDIO, TEXT], MEDIA)
    with pytest.raises(PayloadTooLarge, match=r"3 image parts, over the limit of 2 \(media.max_image_parts\)"):
        check_part_counts([IMAGE, TEXT, IMAGE, IMAGE], MEDIA)
    with pytest.raises(PayloadTooLarge, match=r"media.max_audio_parts"):
        check_part_counts([AUDIO, AUDIO], MEDIA)


def test_the_tally_adds_up_the_request_and_names_the_part_that_went_over():
    tally = MediaTally()
    tally.add_image(20, 25, MEDIA, "messages.0.content.1")
    tally.add_image(20, 25, MEDIA, "messages.0.content.2")  # 1000: at the limit, allowed
    with pytest.raises(PayloadTooLarge) as info:
        tally.add_image(1, 1, MEDIA, "messages.1.content.0")
    assert info.value.param == "messages.1.content.0" and "1001 pixels" in info.value.message
    tally.add_audio(6.0, MEDIA, "a")
    with pytest.raises(PayloadTooLarge, match=r"10.5 s together, over the limit of 10 s"):
        tally.add_audio(4.5, MEDIA, "b")
