"""The installed llama.cpp is the portable build the Makefile compiles (LLAMA_CMAKE_ARGS), not a
native one: a natively built ggml died with SIGILL in ggml_backend_amx_mul_mat on a machine that
advertises AMX. ggml lists the CPU features it was compiled with; a native build on a machine with
AVX512 or AMX (this project's machines have both) lists them and fails here."""

import platform
import re

import pytest

pytestmark = pytest.mark.skipif(platform.machine() not in {"x86_64", "AMD64"}, reason="x86-64 builds only")

# Features that only a build for a newer CPU than the fleet's baseline (or -march=native) turns on.
NOT_PORTABLE = {"AVX512", "AVX512_VBMI", "AVX512_VNNI", "AVX512_BF16", "AVX_VNNI", "AMX_INT8", "AMX_BF16",
                "AMX_TILE"}
BASELINE = {"AVX", "AVX2", "FMA", "F16C"}


def parse_features(info: str) -> dict[str, str]:
    return dict(re.findall(r"([A-Z0-9_]+) = (\w+)", info))


def compiled_features() -> dict[str, str]:
    import llama_cpp

    return parse_features(llama_cpp.llama_print_system_info().decode())


def test_llama_cpp_is_built_for_the_avx2_baseline():
    features = compiled_features()
    missing = {f for f in BASELINE if features.get(f) != "1"}
    assert not missing, f"llama.cpp lacks {sorted(missing)}: {features}"


def test_llama_cpp_has_no_native_avx512_or_amx_code():
    features = compiled_features()
    native = {f for f in NOT_PORTABLE if features.get(f) == "1"}
    assert not native, (f"llama.cpp was compiled with {sorted(native)} (a native build?); rebuild with the "
                        f"Makefile's LLAMA_CMAKE_ARGS: {features}")


def test_the_parser_reads_a_native_build_as_native():
    native = "CPU : SSE3 = 1 | AVX = 1 | AVX2 = 1 | AVX512 = 1 | AMX_INT8 = 1 | OPENMP = 1 | "
    features = parse_features(native)
    assert {f for f in NOT_PORTABLE if features.get(f) == "1"} == {"AVX512", "AMX_INT8"}
