"""Audio in: sniff the container, decode with PyAV, resample to 16 kHz mono float32, and refuse
what a model cannot take (unknown format 415, undecodable/empty 400, too long 400).
Audio out: encode int16 PCM as wav, pcm, flac, mp3 or opus with libsndfile (soundfile).

Both are CPU work of up to seconds (600 s of MP3): the ingress runs them on its MediaPool
(serve_app/media/pool.py), never on its event loop."""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np

from vocabulary.calls import SAMPLE_RATE_STT
from vocabulary.errors import InvalidRequest, SwitchboardError

AUDIO_FORMATS = ("wav", "mp3", "flac", "ogg", "webm", "m4a")


class UnsupportedMediaType(SwitchboardError):
    http_status = 415
    error_type = "invalid_request_error"
    code = "unsupported_media_type"


def sniff_audio(data: bytes) -> str | None:
    """The container of `data` from its first bytes, or None if it is not audio we take."""
    head = data[:16]
    if head[:4] == b"RIFF" and head[8:12] == b"WAVE":
        return "wav"
    if head[:4] == b"fLaC":
        return "flac"
    if head[:4] == b"OggS":
        return "ogg"
    if head[:4] == b"\x1a\x45\xdf\xa3":
        return "webm"
    if head[4:8] == b"ftyp":
        return "m4a"
    if head[:3] == b"ID3" or (len(head) > 1 and head[0] == 0xFF and (head[1] & 0xE0) == 0xE0):
        return "mp3"
    return None


@dataclass(frozen=True)
class DecodedAudio:
    pcm: bytes  # float32 little-endian, mono, 16 kHz: what crosses the handle, made once off the loop
    container: str

    @property
    def samples(self) -> np.ndarray:
        return np.frombuffer(self.pcm, dtype=np.float32)

    @property
    def duration_s(self) -> float:
        return len(self.pcm) / 4 / SAMPLE_RATE_STT

    def pcm_bytes(self) -> bytes:
        return self.pcm


def decode_audio(data: bytes, *, max_seconds: float, param: str = "file") -> DecodedAudio:
    if not data:
        raise InvalidRequest("the audio is empty", param=param, code="empty_audio")
    container = sniff_audio(data)
    if container is None:
        raise UnsupportedMediaType(f"unsupported audio format; send one of: {', '.join(AUDIO_FORMATS)}",
                                   param=param)
    samples = _decode(data, max_seconds, param)
    if samples.size == 0:
        raise InvalidRequest("the audio holds no samples", param=param, code="empty_audio")
    if not np.isfinite(samples).all():
        raise InvalidRequest("the audio holds invalid samples", param=param, code="invalid_audio")
    return DecodedAudio(samples.astype("<f4", copy=False).tobytes(), container)


def _decode(data: bytes, max_seconds: float, param: str) -> np.ndarray:
    import av

    limit = int(max_seconds * SAMPLE_RATE_STT)
    parts: list[np.ndarray] = []
    total = 0
    try:
        with av.open(io.BytesIO(data), mode="r", metadata_errors="ignore") as container:
            if not container.streams.audio:
                raise InvalidRequest("the file has no audio stream", param=param, code="invalid_audio")
            resampler = av.AudioResampler(format="flt", layout="mono", rate=SAMPLE_RATE_STT)
            for frame in container.decode(audio=0):
                for out in resampler.resample(frame):
                    chunk = out.to_ndarray().reshape(-1)
                    total += chunk.size
                    if total > limit:
                        raise InvalidRequest(f"the audio is longer than the limit of {max_seconds:g} s",
                                             param=param, code="audio_too_long")
                    parts.append(chunk)
            for out in resampler.resample(None):
                parts.append(out.to_ndarray().reshape(-1))
    except SwitchboardError:
        raise
    except Exception as exc:  # PyAV raises many error types for broken input
        raise InvalidRequest(f"the audio could not be decoded ({type(exc).__name__})", param=param,
                             code="invalid_audio") from None
    samples = np.concatenate(parts).astype(np.float32) if parts else np.zeros(0, dtype=np.float32)
    if samples.size > limit:
        raise InvalidRequest(f"the audio is longer than the limit of {max_seconds:g} s", param=param,
                             code="audio_too_long")
    return samples


SPEECH_FORMATS = {
    "wav": ("WAV", "PCM_16", "audio/wav"),
    "flac": ("FLAC", "PCM_16", "audio/flac"),
    "mp3": ("MP3", "MPEG_LAYER_III", "audio/mpeg"),
    "opus": ("OGG", "OPUS", "audio/ogg"),
    "pcm": (None, None, "audio/pcm"),
}


def encode_speech(pcm16: bytes, sample_rate: int, fmt: str) -> tuple[bytes, str]:
    """Encode mono int16 PCM; returns (bytes, content type). `pcm` is raw little-endian int16."""
    import soundfile

    container, subtype, mime = SPEECH_FORMATS[fmt]
    if container is None:
        return pcm16, mime
    samples = np.frombuffer(pcm16, dtype=np.int16)
    if fmt == "opus" and sample_rate not in (8000, 12000, 16000, 24000, 48000):
        samples, sample_rate = _resample_int16(samples, sample_rate, 48000), 48000
    buf = io.BytesIO()
    soundfile.write(buf, samples, sample_rate, format=container, subtype=subtype)
    return buf.getvalue(), mime


def _resample_int16(samples: np.ndarray, rate: int, target: int) -> np.ndarray:
    n = int(round(len(samples) * target / rate))
    x = np.linspace(0, len(samples) - 1, n)
    return np.interp(x, np.arange(len(samples)), samples.astype(np.float32)).astype(np.int16)
